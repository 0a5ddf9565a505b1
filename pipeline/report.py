"""Turn a classification result into a report a person would rather look at than read.

The report is a folder that opens offline (no scripts, no network), sized for a corpus:

- `report.html`: the overview. A provenance box (which model, how good held out, where it is
  weak), the shares of policy content per document with their intervals, a documents × domains
  heat map, bars, and, when the documents carry metadata such as `year`, the comparison across
  groups (`pipeline.compare`: small multiples with intervals and a difference chart). No sentence
  text, so it stays small (well under 1 MB for 47 national reports) and opens at once.
- `docs/<doc>.html`: one page per document with its shares and every sentence tinted by domain,
  the scores and secondary domains shown on hover.
- `assets/cjk.woff`: one subset of Noto Sans CJK holding exactly the characters of all pages,
  shared by them, so Chinese renders on machines without Chinese fonts.
- PNG charts beside them (`domain_shares.png`, `heatmap.png`, `compare/`).

The same result and model give the same bytes (no timestamps; the font subset is stamped with a
fixed date), except the training date in the provenance box, which `reproducible=True` leaves out.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from pipeline import charts
from pipeline import compare as cmp
from pipeline.classify import OUTPUT_COLUMNS, default_model_dir
from pipeline.errors import UsageError
from pipeline.heldout import read_heldout
from pipeline.io import atomic_path, read_table, write_text
from pipeline.segment import UNIT_COLUMNS
from pipeline.shares import NON_POLICY, ShareSettings, Summary, policy_ids
from pipeline.taxonomy import domain_ids, zh_names

FONT_FAMILY = "ReportCJK"
FONT_FILE = "assets/cjk.woff"
Progress = Callable[[str, int, int], None]


def load_result(path: str | Path) -> pd.DataFrame:
    """A `classify` output in any of its formats, with scores as dicts and is_heading as bools."""
    frame = read_table(path)
    missing = {"doc", "text", "domain"} - set(frame.columns)
    if missing:
        raise UsageError(f"{path}: not a classification result (missing columns {sorted(missing)}); "
                         "produce one with `policy-domains classify`")
    if frame.empty:
        raise UsageError(f"{path}: no rows, so nothing to report")
    frame["doc"] = frame["doc"].astype(str)
    frame["text"] = frame["text"].fillna("").astype(str)
    frame["domain"] = frame["domain"].fillna("").astype(str)
    unknown = ~frame["domain"].isin(domain_ids())
    if unknown.any():
        row = int(unknown.to_numpy().argmax())
        raise UsageError(f"{path}: row {row + 2}: domain '{frame['domain'].iloc[row]}' is not one of the codebook's "
                         f"domain ids ({', '.join(domain_ids())}); is this a `policy-domains classify` result?")
    if "scores" in frame:
        scores = []
        for row, value in enumerate(frame["scores"], 2):
            try:
                scores.append(_scores(value))
            except (ValueError, TypeError, AttributeError) as exc:
                raise UsageError(f"{path}: row {row}: 'scores' is not an object of domain → score "
                                 f"({type(exc).__name__}); is this a `policy-domains classify` result?") from None
        frame["scores"] = scores
    else:
        frame["scores"] = [{} for _ in range(len(frame))]
    frame["is_heading"] = frame["is_heading"].map(_flag) if "is_heading" in frame else False
    return frame


def _scores(value: Any) -> dict[str, float]:
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items() if v is not None}
    if isinstance(value, str) and value.strip().startswith("{"):
        return {str(k): float(v) for k, v in json.loads(value).items()}
    return {}


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1")


_ROW_COLUMNS = set(OUTPUT_COLUMNS) | set(UNIT_COLUMNS) | {"confident", "cap_code", "cap_topic"}


def document_columns(frame: pd.DataFrame) -> list[str]:
    """Metadata of a result: the extra columns that hold one value per document (pass-through
    columns of sentence tables vary from row to row and are not metadata)."""
    extra = [c for c in frame.columns if c not in _ROW_COLUMNS]
    if not extra:
        return []
    per_doc = frame[extra].astype(str).groupby(frame["doc"], sort=False).nunique()  # str: values may be dicts
    return [c for c in extra if (per_doc[c] <= 1).all()]


def summarise(frame: pd.DataFrame, meta: Sequence[str], settings: ShareSettings,
              model_dir: Path | None) -> pd.DataFrame:
    """The per-document summary `classify --summary` would have written for these rows (adjusted
    shares when the model directory holds its held-out record)."""
    ids = domain_ids()
    heldout = read_heldout(model_dir) if model_dir is not None and model_dir.exists() else None
    summary = Summary(ids, list(meta), settings, heldout.aligned(ids, str(model_dir)) if heldout else None)
    summary.add(frame)
    return summary.frame()


# ---------------------------------------------------------------- provenance

def provenance(model_dir: Path | None, reproducible: bool = False) -> dict[str, Any]:
    """What the reader needs to judge the figures: the model's SHA-256, when it was trained (the
    model file's modification time: the saved files carry no timestamp), its held-out figures and
    its weakest domains (from the model card)."""
    if model_dir is None or not (model_dir / "model.sha256").exists():
        return {}
    info: dict[str, Any] = {"sha256": (model_dir / "model.sha256").read_text(encoding="utf-8").split()[0]}
    if not reproducible and (model_dir / "model.skops").exists():
        stamp = dt.datetime.fromtimestamp((model_dir / "model.skops").stat().st_mtime, dt.timezone.utc)
        info["trained"] = stamp.strftime("%Y-%m-%d %H:%M UTC")
    card_path = model_dir / "model_card.json"
    if card_path.exists():
        card = json.loads(card_path.read_text(encoding="utf-8"))
        metrics = card.get("metrics", {})
        info.update({k: metrics[k] for k in ("units", "accuracy", "macro_f1", "label_set_f1", "share_mae_raw",
                                             "share_mae_adjusted", "secondary_threshold") if k in metrics})
        f1 = metrics.get("per_domain_f1", {})
        info["weakest"] = sorted(f1.items(), key=lambda kv: kv[1])[:4]
        info["limitations"] = card.get("limitations", "")
    return info


def _provenance_box(info: dict[str, Any], names: dict[str, str]) -> str:
    if not info:
        return ("<div class='prov'><b>模型来源</b>：未知（生成报告时未找到模型目录；用 <code>--model</code> "
                "指明分类所用的模型）</div>")
    items = [f"<li>模型 SHA-256：<code title='{info['sha256']}'>{info['sha256'][:16]}…</code></li>"]
    if "trained" in info:
        items.append(f"<li>训练时间：{info['trained']}（模型文件的修改时间）</li>")
    if "accuracy" in info:
        items.append(f"<li>留一文档交叉验证（{info.get('units', '?')} 个人工标注句子）：准确率 {info['accuracy']:.1%}，"
                     f"宏平均 F1 {info['macro_f1']:.3f}"
                     + (f"，多标签集合 F1 {info['label_set_f1']:.3f}（次要领域阈值 {info['secondary_threshold']}）"
                        if "label_set_f1" in info else "") + "</li>")
    if "share_mae_raw" in info:
        items.append(f"<li>单份报告领域占比的平均绝对误差：原始 {info['share_mae_raw'] * 100:.2f} 个百分点，"
                     f"校正后 {info['share_mae_adjusted'] * 100:.2f} 个百分点（以原始占比为准）</li>")
    if info.get("weakest"):
        weak = "、".join(f"{html.escape(names.get(d, d))}（F1 {f:.2f}）" for d, f in info["weakest"])
        items.append(f"<li>较弱的领域：{weak}</li>")
    if info.get("limitations"):
        items.append(f"<li>已知局限：{html.escape(info['limitations'])}</li>")
    return f"<div class='prov'><b>模型来源与可信度</b><ul>{''.join(items)}</ul></div>"


# ---------------------------------------------------------------- building

def _slug(doc: str) -> str:
    """A file name for a document's page: readable ASCII part plus a short hash (ids may repeat
    after cleaning, hold slashes or be all Chinese)."""
    ascii_part = re.sub(r"[^A-Za-z0-9_.-]+", "-", doc).strip("-.")[:40]
    digest = hashlib.blake2b(doc.encode("utf-8"), digest_size=4).hexdigest()
    return f"{ascii_part}-{digest}" if ascii_part else digest


def build_report(result: str | Path, out_dir: str | Path, title: str = "政策领域分析报告",
                 model_dir: str | Path | None = None, by: str | None = None, groups: tuple[str, str] | None = None,
                 settings: ShareSettings | None = None, progress: Progress = lambda stage, done, total: None,
                 reproducible: bool = False, summary_path: str | Path | None = None) -> dict[str, Path]:
    """Write the report folder; returns the paths of its main files.

    `model_dir` (default: the model `dvc repro` trained) is the model that classified the result:
    its provenance and held-out record. `by` groups documents by a metadata column (default: `year`
    when the rows carry it); `groups` picks the two groups of the difference chart. `summary_path`
    (the same run's `classify --summary`) is used as it is instead of summarising the rows again."""
    settings = settings or ShareSettings()
    progress("reading", 0, 1)
    frame = load_result(result)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: --out is a file; the report needs a folder (report.html, docs/, charts)")
    out.mkdir(parents=True, exist_ok=True)
    model_path = Path(model_dir) if model_dir else default_model_dir()
    meta = document_columns(frame)
    if by is None and "year" in meta:
        by = "year"
    if by is not None and by not in meta:
        raise UsageError(f"{result}: no metadata column '{by}' (one value per document); columns: "
                         f"{', '.join(meta) or 'none'}")
    names = zh_names()
    summary = read_table(summary_path) if summary_path else summarise(frame, meta, settings, model_path)
    if summary_path:
        summary["doc"] = summary["doc"].astype(str)
        if set(summary["doc"]) != set(frame["doc"]):
            raise UsageError(f"{summary_path}: its documents are not those of {result}; pass the summary of the same run")
    progress("reading", 1, 1)
    paths = _charts(summary, out, names, progress)
    comparison = ""
    if by is not None:
        progress("comparing", 0, 1)
        shares = cmp.group_shares(summary, by, settings)
        made = cmp.write_comparison(shares, out / "compare", groups, level=settings.level)
        paths.update({f"compare_{k}": v for k, v in made.items()})
        comparison = _comparison_section(shares, made, out, summary[by].isna().sum())
        progress("comparing", 1, 1)
    pages = _document_pages(frame, summary, meta, names, progress)
    main = render_main(summary, meta, names, title, provenance(model_path, reproducible), comparison,
                       {doc: f"docs/{_slug(doc)}.html" for doc in summary["doc"]})
    progress("font", 0, 1)
    write_font(out / FONT_FILE, main + "".join(pages.values()))
    progress("font", 1, 1)
    docs_dir = out / "docs"
    if docs_dir.exists():
        shutil.rmtree(docs_dir)  # no page of a document that is no longer in the result
    for i, (doc, page) in enumerate(pages.items(), 1):
        write_text(docs_dir / f"{_slug(doc)}.html", page)
        progress("writing pages", i, len(pages))
    write_text(out / "report.html", main)
    paths.update(html=out / "report.html", font=out / FONT_FILE, docs=docs_dir)
    return paths


def _policy_table(summary: pd.DataFrame, prefix: str = "share") -> pd.DataFrame:
    """documents × policy domains of one share column family (taxonomy order)."""
    ids = policy_ids(domain_ids())
    return summary.set_index("doc")[[f"{prefix}_{d}" for d in ids]].set_axis(ids, axis=1).astype(float)


def _charts(summary: pd.DataFrame, out: Path, names: dict[str, str], progress: Progress) -> dict[str, Path]:
    progress("charts", 0, 2)
    share = _policy_table(summary)
    used = [d for d in share.columns if share[d].sum() > 0] or list(share.columns)
    labels = {d: f"{names[d]} ({d})" for d in domain_ids()}
    paths = {"shares_png": charts.stacked_shares(share[used], labels, "各文件政策内容的领域构成（按句子，不含“其他”）",
                                                 out / "domain_shares.png")}
    progress("charts", 1, 2)
    paths["heatmap_png"] = charts.heatmap((share[used] * 100).rename(columns=names), "政策注意力热力图（政策内容句子占比 %）",
                                          out / "heatmap.png", fmt="{:.0f}", cmap="YlOrRd", colorbar="句子占比 %")
    progress("charts", 2, 2)
    return paths


def write_font(target: Path, text: str) -> Path:
    """The CJK font reduced to the characters of `text`, as WOFF (~1 MB for a few thousand distinct
    characters instead of 16 MB for the whole font); no timestamp, so the same text gives the same bytes."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(str(charts.cjk_font_path()), recalcTimestamp=False)
    # no OpenType layout features: horizontal simplified Chinese needs none, and keeping them all
    # (vertical forms, other locales' glyphs) doubled the time and half again the size
    subsetter = subset.Subsetter(subset.Options(layout_features=[], name_IDs=["*"]))
    subsetter.populate(text="".join(sorted(set(text))))
    subsetter.subset(font)
    font.flavor = "woff"
    with atomic_path(target) as tmp:
        font.save(str(tmp), reorderTables=True)
    return target


# ---------------------------------------------------------------- pages

_CSS = """
@font-face{font-family:"%s";src:url(%s) format("woff")}
body{font-family:"%s","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:24px auto;
  color:#222;max-width:1200px;padding:0 24px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
a{color:#1f5fa8} .meta{color:#555;font-size:13px}
.prov{background:#f6f8fa;border:1px solid #d8dee4;border-radius:6px;padding:8px 16px;font-size:13px;margin:14px 0}
.prov ul{margin:6px 0;padding-left:20px} .prov li{margin:2px 0}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px;margin:12px 0}
.sw{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px}
small{color:#777} img{max-width:100%%;height:auto}
.row{display:flex;align-items:center;margin:5px 0;gap:10px}
.row .name{width:240px;flex:none;font-size:13px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;text-align:right}
.row .n{width:60px;flex:none;font-size:12px;color:#666}
.bar{display:flex;height:22px;border-radius:3px;overflow:hidden;background:#eee;flex:1}
.bar div{height:100%%;font-size:11px;line-height:22px;text-align:center;overflow:hidden;white-space:nowrap}
table{border-collapse:collapse;font-size:13px}
table.top td,table.top th{border-bottom:1px solid #e5e5e5;padding:5px 10px;text-align:left;vertical-align:top}
table.top td.num{text-align:right;font-variant-numeric:tabular-nums}
table.top th{background:#f4f4f4;font-weight:600}
.doc-name{max-width:260px;overflow-wrap:anywhere}
table.heat td,table.heat th{border:1px solid #fff;padding:3px 5px;text-align:center;font-size:12px}
table.heat th{background:#f4f4f4;font-weight:normal}
table.heat thead th+th{writing-mode:vertical-rl;vertical-align:bottom;padding:6px 3px;height:9em;text-align:left}
table.heat thead th{vertical-align:bottom}
table.heat tbody th{text-align:right;max-width:260px;overflow-wrap:anywhere}
.text{line-height:2.1;font-size:15px}
.s{position:relative;border-bottom:3px solid;padding:1px 1px;cursor:help}
.s:hover{filter:brightness(0.92)}
.s:hover::after{content:attr(data-tip);position:absolute;left:0;top:100%%;z-index:10;white-space:pre;
  background:#222;color:#fff;font-size:12px;font-weight:normal;line-height:1.6;padding:6px 9px;border-radius:4px;
  box-shadow:0 2px 8px rgba(0,0,0,.25);pointer-events:none}
.h{display:table;font-weight:700;margin:10px 0 2px}
.low{border-bottom-style:dotted} .about{overflow-wrap:anywhere}
"""


def _css(font_url: str) -> str:
    tints = "".join(f".d-{d}{{border-color:{c};background:{_tint(c)}}}" for d, c in charts.PALETTE.items())
    return _CSS % (FONT_FAMILY, font_url, FONT_FAMILY) + tints


def _head(title: str, font_url: str) -> str:
    return (f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_css(font_url)}</style></head><body>")


def _name(d: str, names: dict[str, str]) -> str:
    return html.escape(names.get(d, d))


def _swatch(d: str) -> str:
    return f'<i class="sw" style="background:{charts.PALETTE.get(d, "#999")}"></i>'


def _tint(colour: str, alpha: float = 0.22) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _legend(used: Sequence[str], names: dict[str, str]) -> str:
    items = "".join(f"<span>{_swatch(d)}{_name(d, names)} <small>{d}</small></span>" for d in used)
    return f"<div class='legend'>{items}</div>"


def _pct(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value) * 100:.1f}"


def _interval(row: pd.Series, prefix: str, d: str) -> str:
    return f"{_pct(row.get(f'{prefix}_{d}_low'))}–{_pct(row.get(f'{prefix}_{d}_high'))}"


def _bars(share: pd.DataFrame, counts: pd.Series, names: dict[str, str]) -> str:
    rows = []
    for doc, row in share.iterrows():
        segs = "".join(
            f'<div title="{_name(d, names)} {row[d]:.1%}" style="width:{row[d] * 100:.2f}%;'
            f'background:{charts.PALETTE[d]};color:{"#fff" if charts.is_dark(charts.PALETTE[d]) else "#222"}">'
            f'{f"{row[d]:.0%}" if row[d] >= 0.06 else ""}</div>' for d in share.columns if row[d] > 0)
        name = html.escape(str(doc))
        rows.append(f"<div class='row'><div class='name' title='{name}'>{name}</div><div class='bar'>{segs}</div>"
                    f"<div class='n'>{counts[doc]} 句</div></div>")
    return "".join(rows)


def short_columns(summary: pd.DataFrame, meta: Sequence[str], limit: int = 24) -> list[str]:
    """Metadata short enough for a column of the overview table (years, places, levels; not titles or URLs)."""
    return [c for c in meta if summary[c].map(lambda v: len(_text(v))).max() <= limit]


def _top_table(summary: pd.DataFrame, meta: Sequence[str], names: dict[str, str], links: dict[str, str],
               top: int = 3) -> str:
    ids = policy_ids(domain_ids())
    meta = short_columns(summary, meta)
    head = ("<th>文件</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in meta) + "<th>句数</th><th>“其他” %</th>"
            + "".join(f"<th>第{i}领域 <small>占比 % [95% 区间]</small></th>" for i in "一二三"[:top]))
    rows = []
    for _, row in summary.iterrows():
        shares = pd.Series({d: float(row[f"share_{d}"]) for d in ids})
        leaders = [d for d in shares.sort_values(ascending=False, kind="stable").index[:top] if shares[d] > 0]
        cells = "".join(f"<td>{_swatch(d)}{_name(d, names)}<br><small>{_pct(shares[d])} "
                        f"[{_interval(row, 'share', d)}]</small></td>" for d in leaders)
        cells += "<td></td>" * (top - len(leaders))
        doc = str(row["doc"])
        rows.append(f"<tr><td class='doc-name'><a href='{links[doc]}'>{html.escape(doc)}</a></td>"
                    + "".join(f"<td>{html.escape(_text(row[c]))}</td>" for c in meta)
                    + f"<td class='num'>{int(row['sentences'])}</td><td class='num'>{_pct(row['share_all_other'])}</td>"
                    + cells + "</tr>")
    return f"<table class='top'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _value_html(value: str) -> str:
    """A metadata value on a page: web addresses as links."""
    if re.match(r"https?://\S+$", value):
        return f"<a href='{html.escape(value)}'>{html.escape(value)}</a>"
    return html.escape(value)


def _text(value: Any) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _heat_table(share: pd.DataFrame, names: dict[str, str], links: dict[str, str]) -> str:
    used = list(share.columns)
    top = max(float(share.to_numpy().max()), 1e-9)
    head = "".join(f"<th>{_name(d, names)}</th>" for d in used)
    rows = []
    for doc, row in share.iterrows():
        cells = "".join(
            f"<td style='background:rgba(215,48,31,{row[d] / top:.2f});color:{'#fff' if row[d] > 0.55 * top else '#222'}'>"
            f"{row[d] * 100:.0f}</td>" for d in used)
        rows.append(f"<tr><th><a href='{links[str(doc)]}'>{html.escape(str(doc))}</a></th>{cells}</tr>")
    return (f"<table class='heat'><thead><tr><th>文件</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "<p class='meta'>数字为该领域句子占文件政策内容句子（不含“其他”）的百分比；颜色越深占比越高。</p>")


def _comparison_section(shares: cmp.GroupShares, made: dict[str, Path], out: Path, skipped: int) -> str:
    rel = {k: p.relative_to(out).as_posix() for k, p in made.items()}
    parts = [f"<h2>按 {html.escape(shares.by)} 比较</h2>",
             f"<p class='meta'>{len(shares.groups)} 组。每组的占比把组内各文件的政策内容句子合并计算；95% 区间来自两阶段自助法"
             "（先重抽文件，再按每份文件的句子计数重抽占比），同时反映文件之间与文件之内的差异。"
             + ("数值轴上缺少的年份留空，不连线。" if shares.numeric else "")
             + (f"{skipped} 份文件没有 {html.escape(shares.by)}，未计入。" if skipped else "")
             + f" 数据表：<a href='{rel['table']}'>{html.escape(made['table'].name)}</a>。</p>",
             f"<img src='{rel['small_multiples']}' alt='各领域占比的小多图' loading='lazy'>"]
    if "difference" in rel:
        parts.append(f"<p class='meta'>两组之差（红色：95% 区间不含 0）。数据表：<a href='{rel['difference_table']}'>"
                     f"{html.escape(made['difference_table'].name)}</a>。</p>"
                     f"<img src='{rel['difference']}' alt='两组之差' loading='lazy'>")
    trends = [k for k in rel if k.startswith("trend_")]
    if trends:
        parts.append("<p class='meta'>各领域单独的图：" + " · ".join(
            f"<a href='{rel[k]}'>{html.escape(zh_names().get(k[6:], k[6:]))}</a>" for k in trends) + "</p>")
    return "".join(parts)


def render_main(summary: pd.DataFrame, meta: Sequence[str], names: dict[str, str], title: str,
                info: dict[str, Any], comparison: str, links: dict[str, str]) -> str:
    """The overview page: no sentence text, so its size grows with documents, not with sentences."""
    share = _policy_table(summary)
    used = [d for d in share.columns if share[d].sum() > 0] or list(share.columns)
    counts = summary.set_index("doc")["sentences"].astype(int)
    units, policy = int(summary["sentences"].sum()), int(summary["policy_sentences"].sum())
    parts = [_head(title, FONT_FILE), f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{len(summary)} 份文件 · {units:,} 个句子，其中政策内容 {policy:,} 句"
             f"（{policy / max(units, 1):.0%}）· 模型自动分类。占比按政策内容句子计算（不含问候、程序性语句等“其他”），"
             "带 95% 区间；点击文件名查看逐句标注。</p>",
             _provenance_box(info, names), comparison,
             "<h2>各文件主要政策领域</h2>", _top_table(summary, meta, names, links),
             "<h2>各文件政策内容的领域构成（按句子）</h2>", _legend(used, names), _bars(share[used], counts, names),
             "<h2>政策注意力热力图（政策内容句子占比 %）</h2>", _heat_table(share[used], names, links),
             "<p class='meta'>图片版本：<a href='domain_shares.png'>domain_shares.png</a> · "
             "<a href='heatmap.png'>heatmap.png</a></p></body></html>"]
    return "".join(parts)


def _tip(r: Any, names: dict[str, str]) -> str:
    ranked = sorted(((k, v) for k, v in (r.scores or {}).items() if v >= 0.01), key=lambda kv: -kv[1])[:5]
    lines = [f"{names.get(r.domain, r.domain)}（{r.domain}）"] + [f"{names.get(k, k)}  {v:.2f}" for k, v in ranked]
    domains = getattr(r, "domains", None)
    if isinstance(domains, str) and "|" in domains:
        lines.append("多领域：" + " | ".join(names.get(d, d) for d in domains.split("|")))
    if getattr(r, "confident", True) is False:
        lines.append("低于置信度阈值")
    return "\n".join(lines)


def _sentence(r: Any, names: dict[str, str]) -> str:
    domain = r.domain if r.domain in charts.PALETTE else "other"
    low = " low" if getattr(r, "confident", True) is False else ""
    return (f"<span class='s d-{domain}{' h' if r.is_heading else ''}{low}' "
            f"data-tip='{html.escape(_tip(r, names))}'>{html.escape(r.text)}</span>")


def _share_rows(row: pd.Series, names: dict[str, str]) -> str:
    """A document's table of every domain: policy share, adjusted share, all-units share, each with bounds."""
    adjusted = "adj_share_economy" in row
    lines = []
    for d in domain_ids():
        policy = f"<td class='num'>{_pct(row[f'share_{d}'])}</td><td class='num'><small>{_interval(row, 'share', d)}</small></td>" \
            if d != NON_POLICY else "<td></td><td></td>"
        adj = (f"<td class='num'>{_pct(row[f'adj_share_{d}'])}</td><td class='num'><small>"
               f"{_interval(row, 'adj_share', d)}</small></td>" if d != NON_POLICY else "<td></td><td></td>") \
            if adjusted else ""
        lines.append(f"<tr><td>{_swatch(d)}{_name(d, names)} <small>{d}</small></td><td class='num'>{int(row[f'n_{d}'])}</td>"
                     f"{policy}{adj}<td class='num'>{_pct(row[f'share_all_{d}'])}</td>"
                     f"<td class='num'><small>{_interval(row, 'share_all', d)}</small></td></tr>")
    head = ("<tr><th>领域</th><th>句数</th><th>政策内容占比 %</th><th>95% 区间</th>"
            + ("<th>校正后 %</th><th>95% 区间</th>" if adjusted else "") + "<th>全部句子占比 %</th><th>95% 区间</th></tr>")
    return f"<table class='top'><thead>{head}</thead><tbody>{''.join(lines)}</tbody></table>"


def _document_pages(frame: pd.DataFrame, summary: pd.DataFrame, meta: Sequence[str], names: dict[str, str],
                    progress: Progress) -> dict[str, str]:
    """One page per document: its metadata, its shares and its sentences."""
    rows = summary.set_index("doc")
    pages: dict[str, str] = {}
    groups = frame.groupby("doc", sort=False)
    for i, (doc, group) in enumerate(groups, 1):
        row = rows.loc[doc]
        about = " · ".join(f"{html.escape(c)}：{_value_html(_text(row[c]))}" for c in meta if _text(row[c]))
        used = [d for d in domain_ids() if int(row[f"n_{d}"])]
        sentences = "".join(_sentence(r, names) for r in group.itertuples(index=False))
        pages[str(doc)] = "".join([
            _head(str(doc), "../" + FONT_FILE), "<p class='meta'><a href='../report.html'>← 返回总览</a></p>",
            f"<h1>{html.escape(str(doc))}</h1>",
            f"<p class='meta about'>{about + ' · ' if about else ''}{int(row['sentences'])} 个句子，其中政策内容 "
            f"{int(row['policy_sentences'])} 句</p>",
            "<h2>领域占比</h2>", _share_rows(row, names),
            "<p class='meta'>政策内容占比不含“其他”；区间为 Wilson 95% 区间（把句子视为独立抽样，相邻句子常属同一领域，"
            "故区间偏窄）；校正后占比按留一文档交叉验证的混淆矩阵修正分类误差，其区间同时反映修正本身的不确定性。</p>",
            "<h2>逐句标注</h2>", _legend(used, names),
            "<p class='meta'>鼠标停在句子上可查看各领域得分与次要领域；虚线下划线表示低于置信度阈值。</p>",
            f"<div class='text'>{sentences}</div></body></html>"])
        progress("document pages", i, groups.ngroups)
    return pages
