"""Turn a classification result into a report a person would rather look at than read.

`DIR/report.html` is one self-contained file (inline CSS, no scripts or network): stacked bars of
each document's domain shares, a documents × domains heat map, and every document's text with
sentences coloured by domain, their scores on hover. PNG versions of the charts sit beside it.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import charts
from pipeline.io import read_table, write_text
from pipeline.taxonomy import domain_ids, zh_names


def load_result(path: str | Path) -> pd.DataFrame:
    frame = read_table(path)
    missing = {"doc", "text", "domain"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: not a classification result (missing columns {sorted(missing)}); "
                         "produce one with `policy-domains classify`")
    if "scores" in frame:
        frame["scores"] = frame["scores"].map(_scores)
    return frame


def _scores(value: Any) -> dict[str, float]:
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items() if v is not None}
    if isinstance(value, str) and value.strip().startswith("{"):
        return {k: float(v) for k, v in json.loads(value.replace("'", '"')).items()}
    return {}


def shares(frame: pd.DataFrame) -> pd.DataFrame:
    """Documents × domains: share of each document's sentences, columns in taxonomy order."""
    counts = pd.crosstab(frame["doc"], frame["domain"])
    counts = counts.reindex(columns=domain_ids(), fill_value=0)
    counts = counts.reindex(pd.unique(frame["doc"]))
    return counts.div(counts.sum(axis=1).replace(0, 1), axis=0)


def build_report(result: str | Path, out_dir: str | Path, title: str = "政策领域分析报告") -> dict[str, Path]:
    """Write report.html and the PNG charts into out_dir; returns their paths."""
    frame = load_result(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = zh_names()
    share = shares(frame)
    used = [d for d in domain_ids() if share[d].sum() > 0] or domain_ids()
    labels = {d: f"{names[d]} ({d})" for d in domain_ids()}
    paths = {
        "shares_png": charts.stacked_shares(share[used], labels, "各文件政策领域构成（按句子）", out / "domain_shares.png"),
        "heatmap_png": charts.heatmap((share[used] * 100).rename(columns=names), "政策注意力热力图（句子占比 %）",
                                      out / "heatmap.png", fmt="{:.0f}", cmap="YlOrRd"),
    }
    write_text(out / "report.html", render_html(frame, share, used, title))
    paths["html"] = out / "report.html"
    return paths


_CSS = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.legend span{display:inline-block;margin:2px 8px 2px 0;font-size:13px}
.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.bar{display:flex;height:22px;border-radius:3px;overflow:hidden;background:#eee;flex:1}
.bar div{height:100%}
.row{display:flex;align-items:center;margin:4px 0}.row .name{width:220px;font-size:13px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
table.heat{border-collapse:collapse;font-size:12px}table.heat td,table.heat th{border:1px solid #fff;padding:3px 5px;text-align:center}
table.heat th{background:#f4f4f4;font-weight:normal}
.doc p{line-height:1.9;font-size:15px}
.s{border-bottom:3px solid;padding:1px 0;cursor:help}
.h{font-weight:bold}
.meta{color:#666;font-size:13px}
"""


def _legend(used: list[str]) -> str:
    names = zh_names()
    return "".join(f'<span><i class="sw" style="background:{charts.PALETTE[d]}"></i>{html.escape(names[d])} '
                   f'<small>{d}</small></span>' for d in used)


def _heat_colour(v: float) -> str:
    alpha = min(1.0, v / 0.35)
    return f"rgba(215,48,31,{alpha:.2f})"


def render_html(frame: pd.DataFrame, share: pd.DataFrame, used: list[str], title: str) -> str:
    names = zh_names()
    parts = [f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{len(share)} 份文件 · {len(frame)} 个句子 · 模型自动分类，悬停句子可查看各领域得分</p>",
             f"<div class='legend'>{_legend(used)}</div>", "<h2>各文件政策领域构成</h2>"]
    for doc, row in share.iterrows():
        segs = "".join(f'<div title="{html.escape(names[d])} {row[d]:.1%}" style="width:{row[d] * 100:.2f}%;'
                       f'background:{charts.PALETTE[d]}"></div>' for d in used if row[d] > 0)
        parts.append(f"<div class='row'><div class='name' title='{html.escape(str(doc))}'>{html.escape(str(doc))}</div>"
                     f"<div class='bar'>{segs}</div></div>")
    parts.append("<h2>政策注意力热力图（句子占比）</h2><table class='heat'><tr><th>文件</th>")
    parts.extend(f"<th>{html.escape(names[d])}</th>" for d in used)
    parts.append("</tr>")
    for doc, row in share.iterrows():
        cells = "".join(f"<td style='background:{_heat_colour(row[d])}'>{row[d] * 100:.0f}</td>" for d in used)
        parts.append(f"<tr><th>{html.escape(str(doc))}</th>{cells}</tr>")
    parts.append("</table><h2>逐句标注</h2>")
    for doc, group in frame.groupby("doc", sort=False):
        parts.append(f"<details class='doc'><summary>{html.escape(str(doc))}（{len(group)} 句）</summary><p>")
        for r in group.itertuples(index=False):
            scores = getattr(r, "scores", {}) or {}
            top = sorted(scores.items(), key=lambda kv: -kv[1])[:5]
            tip = " · ".join(f"{names.get(k, k)} {v:.2f}" for k, v in top) or r.domain
            heading = bool(getattr(r, "is_heading", False))
            parts.append(f"<span class='s{' h' if heading else ''}' style='border-color:{charts.PALETTE.get(r.domain, '#999')}' "
                         f"title='{html.escape(names.get(r.domain, r.domain))} | {html.escape(tip)}'>"
                         f"{html.escape(str(r.text))}</span>")
        parts.append("</p></details>")
    parts.append("</body></html>")
    return "".join(parts)
