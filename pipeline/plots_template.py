"""An HTML template for `dvc plots show` that works without internet.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN, so on a machine without
internet (and behind many institutional firewalls) every plot stays blank. This template inlines
the same three libraries from the installed `vl-convert-python` package; `.dvc/config` points
`plots.html_template` at the file the `plots_template` stage writes.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import UsageError
from pipeline.io import write_text

_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>policy-domains: DVC plots</title>
<script>
__BUNDLE__
</script>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-spacing: 15px; }
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def offline_template() -> str:
    """The page, with the Vega libraries inline (about 0.9 MB) and DVC's `{plot_divs}` slot."""
    import vl_convert

    bundle = vl_convert.javascript_bundle()
    if any(p in bundle for p in _PLACEHOLDERS):  # DVC fills slots by plain text replacement
        raise UsageError("the Vega bundle contains a DVC template placeholder; use DVC's default page")
    return _PAGE.replace("__BUNDLE__", bundle.replace("</script", "<\\/script"))


def write_template(path: str | Path) -> Path:
    write_text(path, offline_template())
    return Path(path)
