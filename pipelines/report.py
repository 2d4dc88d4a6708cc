"""The audit report: one self-contained HTML page per model version (figures embedded as PNG,
no scripts, no external files), for managers and compliance officers."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import pandas as pd

from training.audit import protected_inputs

STATUS_WORDS = {
    "pass": "Pass",
    "watch": "Watch",
    "flag": "Flag",
}
VERDICT_SENTENCES = {
    "pass": "Every check is within its threshold.",
    "watch": "No check is flagged, but some deserve a look (see the items marked Watch).",
    "flag": "At least one check is flagged: this version must not be promoted without a "
    "written reason.",
}

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit of {{ r.model }} v{{ r.version }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 1.5rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2rem;
       margin-top: 2.2rem; } h3 { margin-top: 1.4rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.88rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
.status { font-weight: 600; border-radius: 4px; padding: 0.05rem 0.45rem; color: #fff; }
.pass { background: #3a8a4f; } .watch { background: #c7772e; } .flag { background: #b23b3e; }
.verdict { font-size: 1.15rem; padding: 0.7rem 1rem; border-radius: 6px; margin: 1rem 0;
       border-left: 8px solid; background: #fafafa; }
.verdict.pass { border-color: #3a8a4f; } .verdict.watch { border-color: #c7772e; }
.verdict.flag { border-color: #b23b3e; }
.verdict.pass, .verdict.watch, .verdict.flag { color: #222; }
figure { display: inline-block; margin: 0.4rem 0.6rem 0.4rem 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.muted { color: #666; font-size: 0.9rem; } nav a { margin-right: 0.9rem; }
pre { background: #f7f7f7; padding: 0.8rem; white-space: pre-wrap; font-size: 0.85rem; }
</style>
</head>
<body>
<h1>Audit of {{ r.model }} version {{ r.version }}</h1>
<p class="muted">Portfolio {{ w.portfolio }}, audit window {{ w.audit_from }} to {{ w.audit_to }}
({{ "{:,}".format(w.audit_rows) }} scored accounts over {{ w.as_of_times }} days), report made
{{ made }}.</p>
<nav><a href="#summary">Summary</a><a href="#explanations">Explanations</a>
<a href="#groups">Groups</a><a href="#proxies">Proxies</a><a href="#drift">Drift</a>
{% if kpis %}<a href="#kpis">Collection KPIs</a>{% endif %}
<a href="#card">Data window and model card</a></nav>

<h2 id="summary">Summary</h2>
<div class="verdict {{ r.verdict }}" id="verdict">Verdict:
<span class="status {{ r.verdict }}">{{ words[r.verdict] }}</span>
{{ sentences[r.verdict] }}</div>
<table id="checks"><tr><th class="text">Check</th><th class="text">Result</th>
<th class="text">In plain words</th></tr>
{% for c in r.checks %}<tr><td class="text">{{ c.name }}</td>
<td class="text"><span class="status {{ c.status }}">{{ words[c.status] }}</span></td>
<td class="text">{{ c.detail }}</td></tr>{% endfor %}
</table>
<p class="muted">"At the top of the worklist" means among the {{ pct(w.top_share) }} highest
scores of a day. The adverse impact ratio divides a group's share at the top by the most
favoured group's (the four-fifths screen: below {{ t.adverse_impact_min }} deserves a look). A
group is flagged when it is under-scored (its mean predicted payment rate below
{{ pct(t.calibration_ratio_min) }} of what it actually pays, which pushes it down the worklist
whatever it pays) or when its payers reach the top less than {{ t.adverse_impact_min }} times as
often as other groups' payers (the opportunity ratio); a group selected less but scored in line
with what it pays is marked Watch. Each is flagged only when a test with debtors as the units,
corrected for the number of groups (Holm), rejects chance at the {{ t.significance }} level,
and only for groups of at least {{ t.min_group_size }} debtors.</p>

<h2 id="explanations">Explanations: what drives the scores</h2>
<p>The bars show how much each input moves a score on average (mean absolute SHAP value, in
log-odds of paying), over {{ "{:,}".format(explained) }} accounts of the audit window.</p>
{{ fig("mean_shap") }}{{ fig("shap_summary") }}
<h3>How the top inputs act</h3>
{% for name in dependence %}{{ fig(name) }}{% endfor %}
<h3>Reasons most often given first</h3>
{{ table(reasons, pct_columns=["share"]) }}

<h2 id="groups">Groups of debtors</h2>
<p>Age band, gender (where known) and region come from the debtors' records and are used only
here: they are never model inputs. Each rate has its 95% bootstrap interval in brackets.</p>
{% for attribute, rows in groups %}
<h3>By {{ attribute.replace("_", " ") }}</h3>
{{ fig("air_" + attribute) }}
{{ rows }}
{% endfor %}

<h2 id="proxies">Proxies: can the inputs stand in for a protected attribute?</h2>
<p>A small model tries to predict each attribute from the model's own inputs (ROC AUC out of
fold; 0.5 means the inputs say nothing about it). A high AUC does not mean the model
discriminates, but it shows which inputs could carry the attribute indirectly.</p>
{{ table(proxies) }}

<h2 id="drift">Drift between the training window and the audit window</h2>
<p>Population stability index (PSI): below {{ t.psi_watch }} stable, above {{ t.psi_max }} a
major shift. Score PSI: {{ "%.3f"|format(r.score_psi) }}.</p>
{{ fig("scores") }}
{{ table(drift) }}

{% if kpis %}
<h2 id="kpis">Collection KPIs</h2>
<p>The operation over the weeks of the data (all segments together; the command
<code>cobranza kpis</code> gives each segment).</p>
{% for name in kpi_figures %}{{ fig(name) }}{% endfor %}
{{ kpis }}
{% endif %}

<h2 id="card">Data window and model card</h2>
<table>{% for key, value in w.items() %}<tr><th class="text">{{ key.replace("_", " ") }}</th>
<td class="text">{{ value }}</td></tr>{% endfor %}</table>
<h3>The model's {{ r.features|length }} inputs</h3>
<p id="inputs">{{ r.features|join(", ") }}</p>
<p>Protected attributes among them:
<strong id="protected-inputs">{{ protected or "none" }}</strong>.</p>
{% if card %}<h3>Model card</h3><pre>{{ card }}</pre>{% endif %}
<h3>Thresholds</h3>
<table>{% for key, value in t.items() %}<tr><th class="text">{{ key.replace("_", " ") }}</th>
<td>{{ value }}</td></tr>{% endfor %}</table>
</body>
</html>
"""


def figure_png(figure: Any, dpi: int = 96) -> str:
    """A matplotlib figure as a base64 PNG (then closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(value: Any, percent: bool) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.1%}" if percent else f"{value:,.3f}"
    if isinstance(value, list):
        return ", ".join(
            f"{v['feature']} ({v['gain_share']:.0%})" if isinstance(v, dict) else str(v)
            for v in value
        )
    return f"{value:,}" if isinstance(value, int) else str(value)


def html_table(frame: pd.DataFrame, pct_columns: list[str] | None = None) -> str:
    """A plain HTML table (values escaped); numbers right-aligned, text left."""
    from markupsafe import escape

    percent = set(pct_columns or [])
    head = "".join(f"<th>{escape(str(c).replace('_', ' '))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            css = "text" if isinstance(value, str | list) else ""
            cells.append(f'<td class="{css}">{escape(_cell(value, column in percent))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _interval(row: pd.Series, name: str, percent: bool = True) -> str:
    value, low, high = row[name], row.get(f"{name}_low"), row.get(f"{name}_high")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    form = "{:.1%}" if percent else "{:.2f}"
    text = form.format(value)
    if low is not None and not math.isnan(low) and not math.isnan(high):
        text += f" [{form.format(low)}, {form.format(high)}]"
    return text


GROUP_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("at the top", "top_share", True),
    ("adverse impact ratio", "adverse_impact_ratio", False),
    ("true positive rate", "tpr", True),
    ("opportunity ratio", "opportunity_ratio", False),
    ("false positive rate", "fpr", True),
    ("mean predicted", "mean_predicted", True),
    ("actual rate", "actual_rate", True),
)
"""The group table's interval columns: heading, metric, shown as a percentage."""


def group_table(table: pd.DataFrame) -> str:
    """One attribute's groups: size, rates with intervals, status."""
    from markupsafe import escape

    headings = ["group", "rows (debtors)", *(c[0] for c in GROUP_COLUMNS), "status"]
    head = "".join(f"<th>{escape(c)}</th>" for c in headings)
    rows = []
    for _, row in table.iterrows():
        star = " ★" if row["reference"] else ""
        cells = [f'<td class="text">{escape(str(row["group"]))}{star}</td>']
        cells.append(f"<td>{row['size']:,} ({row['effective_size']:,})</td>")
        cells += [
            f"<td>{escape(_interval(row, name, percent))}</td>"
            for _, name, percent in GROUP_COLUMNS
        ]
        badge = f'<span class="status {row["status"]}">{STATUS_WORDS[row["status"]]}</span>'
        cells.append(f'<td class="text">{badge} {escape(row["note"])}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    legend = '<p class="muted">★ the most favoured group (the reference of the ratio).</p>'
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{legend}"


def render_report(result: Any, card: str | None = None) -> str:
    """The report's HTML for an `AuditResult`."""
    from datetime import UTC, datetime

    from jinja2 import Environment
    from markupsafe import Markup

    images = {name: figure_png(figure) for name, figure in result.figures.items()}

    def fig(name: str) -> Markup:
        if name not in images:
            return Markup("")
        alt = name.replace("_", " ")
        return Markup(
            f'<figure><img alt="{alt}" src="data:image/png;base64,{images[name]}"></figure>'
        )

    def table(frame: pd.DataFrame, pct_columns: list[str] | None = None) -> Markup:
        return Markup(html_table(frame, pct_columns))

    kpis_html, kpi_figures = "", []
    if result.kpis:
        weekly = result.kpis["weekly"]
        everyone = weekly[weekly["segment"] == "all"]
        columns = [
            "week",
            "collected",
            "collection_rate",
            "collection_rate_net_of_forgiven",
            "attempts",
            "promise_rate",
            "kept_rate",
            "average_payment",
            "days_to_first_payment",
            "cost_per_amount_collected",
        ]
        kpis_html = html_table(
            everyone[columns].tail(12),
            pct_columns=[
                "collection_rate",
                "collection_rate_net_of_forgiven",
                "promise_rate",
                "kept_rate",
            ],
        )
        kpi_figures = [name for name in images if name.startswith("kpi_")]
    environment = Environment(autoescape=True)
    page = environment.from_string(TEMPLATE).render(
        r=result,
        w=result.window,
        t=result.thresholds,
        words=STATUS_WORDS,
        sentences=VERDICT_SENTENCES,
        made=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        fig=fig,
        table=table,
        pct=lambda v: f"{v:.0%}",
        explained=int(result.window.get("explained_rows", 0)) or 0,
        dependence=[name for name in images if name.startswith("dependence_")],
        reasons=result.reason_counts,
        groups=[
            (attribute, Markup(group_table(rows)))
            for attribute, rows in result.groups.groupby("attribute", sort=False, observed=True)
        ],
        proxies=result.proxies,
        drift=result.drift.head(15),
        kpis=Markup(kpis_html),
        kpi_figures=kpi_figures,
        card=card,
        protected=", ".join(protected_inputs(result.features)),
    )
    return page
