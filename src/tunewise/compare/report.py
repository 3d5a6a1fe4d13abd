"""Write a comparison's ``report.md`` and a self-contained ``report.html`` with PNG plots.

Both documents are rendered from one list of blocks, so they always say the same thing.
The HTML embeds its images as data URIs and escapes every piece of text (labels and
recipe names come from user files).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from tunewise.compare.summary import (
    TFIDF,
    adapted_pair,
    cells,
    describe_recipe,
    fmt_count,
    fmt_fraction,
    fmt_score,
    fractions,
    gap_ci,
    init_only_pair,
    items,
    recipe_order,
    test_sets,
    verdict,
)
from tunewise.tuning import TuneSpec, describe_tuning


@dataclass
class Block:
    kind: str  # "h1" | "h2" | "p" | "ul" | "table" | "img" | "code"
    text: str = ""
    items: list[str] | None = None
    header: list[str] | None = None
    rows: list[list[str]] | None = None


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(results: dict, path: Path) -> None:
    """Test macro-F1 (mean ± sd over seeds) against the labelled fraction, log x."""
    plt = _plt()
    table = cells(results)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in recipe_order(results):
        pts = [(f, table[(name, f)]) for f in fractions(results) if (name, f) in table]
        xs = [f for f, _ in pts]
        ys = [c.mean("test_macro_f1") for _, c in pts]
        es = [c.sd("test_macro_f1") for _, c in pts]
        style = {"linestyle": "--", "color": "gray"} if name == TFIDF else {}
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name, **style)
    ax.set_xscale("log")
    fr = fractions(results)
    ax.set_xticks(fr, [fmt_fraction(f) for f in fr])
    ax.minorticks_off()
    ax.set_xlabel("share of the training labels (log scale)")
    ax.set_ylabel("test macro-F1 (mean ± sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_in_vs_out_of_domain(results: dict, path: Path) -> bool:
    """In-domain test macro-F1 (x) against each extra test set's figure (y), one marker per
    recipe and label fraction (mean over seeds): a recipe that wins in domain and loses out of
    domain sits bottom right. False when no run was scored on an extra set."""
    sets = test_sets(results)
    if not sets:
        return False
    plt = _plt()
    table = cells(results)
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.4), squeeze=False)
    for ax, (name, metric) in zip(axes[0], sets.items(), strict=True):
        for recipe in recipe_order(results):
            pts = [
                (c.mean("test_macro_f1"), c.mean(("ood", name, "headline")), f)
                for f in fractions(results)
                if (c := table.get((recipe, f))) is not None
            ]
            pts = [p for p in pts if p[0] is not None and p[1] is not None]
            if not pts:
                continue
            style = {"linestyle": "--", "color": "gray"} if recipe == TFIDF else {}
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=recipe, **style)
            for x, y, f in pts:
                ax.annotate(fmt_fraction(f), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel("in-domain test macro-F1")
        ax.set_ylabel(f"{name}: {metric}")
        ax.set_title(f"in domain vs {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_training_curves(results: dict, path: Path) -> bool:
    """Dev loss and dev macro-F1 per epoch, one column per neural recipe, one line per
    label fraction (first seed). False when no run has a history."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    names = [n for n in recipe_order(results) if n != TFIDF]
    first_seed = min((r["seed"] for r in results["runs"]), default=0)
    runs = {
        (r["recipe"], float(r["fraction"])): r
        for r in results["runs"]
        if r["seed"] == first_seed and r.get("history")
    }
    names = [n for n in names if any(k[0] == n for k in runs)]
    if not names:
        return False
    fig, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 6.4), squeeze=False)
    for col, name in enumerate(names):
        for f in fractions(results):
            run = runs.get((name, f))
            if run is None:
                continue
            epochs = [h["epoch"] for h in run["history"]]
            axes[0][col].plot(
                epochs, [h.get("dev_loss") for h in run["history"]], marker=".", label=fmt_fraction(f)
            )
            axes[1][col].plot(
                epochs, [h.get("dev_macro_f1") for h in run["history"]], marker=".", label=fmt_fraction(f)
            )
        axes[0][col].set_title(name)
        axes[0][col].set_ylabel("dev loss")
        axes[1][col].set_ylabel("dev macro-F1")
        axes[1][col].set_xlabel("epoch")
        for row in (0, 1):
            axes[row][col].xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in (axes[0][col], axes[1][col]):
            ax.grid(alpha=0.3)
        axes[0][col].legend(title="label fraction", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_confusions(results: dict, out: Path) -> list[tuple[str, Path]]:
    """One confusion matrix per recipe: largest fraction, first seed, test split."""
    from tunewise.evaluation import plot_confusion_matrix

    made = []
    top = max(fractions(results), default=None)
    for name in recipe_order(results):
        run = min(
            (r for r in results["runs"] if r["recipe"] == name and float(r["fraction"]) == top),
            key=lambda r: r["seed"],
            default=None,
        )
        if run is None or not run.get("confusion_matrix"):
            continue
        cm = run["confusion_matrix"]
        metrics = {
            "labels": results["labels"],
            "confusion_matrix": cm,
            "accuracy": run["test_accuracy"],
            "macro_f1": run["test_macro_f1"],
            "n": sum(map(sum, cm)),
        }
        path = out / f"confusion_{_safe(name)}.png"
        plot_confusion_matrix(metrics, path)
        made.append((name, path))
    return made


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def build_blocks(results: dict, images: dict[str, Path], command: str | None = None) -> list[Block]:
    names = recipe_order(results)
    fr = fractions(results)
    table = cells(results)
    sizes = results.get("split_sizes", {})
    blocks = [
        Block("h1", "tunewise compare: fine-tune or train from scratch?"),
        Block(
            "p",
            f"Data: {results.get('data')} — {len(results.get('labels', []))} labels, "
            f"{sizes.get('train', '?')} train / {sizes.get('dev', '?')} dev / {sizes.get('test', '?')} test "
            f"{items(results)} (split seed {results.get('split_seed')}). "
            + _protocol(results)
            + " Figures are "
            "test macro-F1, mean ± sd over seeds "
            f"{', '.join(map(str, results.get('seeds', [])))}.",
        ),
        Block("h2", "Verdict"),
        Block("ul", items=verdict(results) or ["Not enough finished runs for a verdict yet."]),
    ]
    blocks += _gap_blocks(results)
    blocks += [
        Block("h2", "Test macro-F1 by label fraction"),
        Block(
            "table",
            header=["recipe"]
            + [f"{fmt_fraction(f)} (~{fmt_count(_size(table, names, f))} msgs)" for f in fr],
            rows=[[n] + [fmt_score(table.get((n, f))) for f in fr] for n in names],
        ),
    ]
    if "learning_curve" in images:
        blocks.append(Block("img", str(images["learning_curve"]), items=["macro-F1 vs labelled fraction"]))
    top = fr[-1] if fr else None
    blocks += _shortcut_blocks(results)
    blocks += _out_of_domain_blocks(results, names, table, fr, top, images)
    blocks += [
        Block("h2", "The two regimes, as these recipes ran them"),
        Block(
            "p",
            "The note's comparison table, filled from the recipes and the runs; outcomes are on "
            "the test split" + (f", costs at {fmt_fraction(top)} of the labels." if top is not None else "."),
        ),
        _regimes_table(results, names, table, fr, top),
    ]
    if "training_curves" in images:
        blocks += [
            Block("h2", "Training curves"),
            Block(
                "p",
                ("Validation-slice" if results.get("tune") else "Dev")
                + " loss and macro-F1 per epoch (first seed), one line per label fraction.",
            ),
            Block("img", str(images["training_curves"]), items=["training curves"]),
        ]
    confusions = [(k, v) for k, v in images.items() if k.startswith("confusion:")]
    if confusions:
        blocks.append(
            Block("h2", f"Confusion matrices (test split, {fmt_fraction(top)} of the labels, first seed)")
        )
        for key, path in confusions:
            blocks += [Block("p", key.split(":", 1)[1]), Block("img", str(path), items=[key])]
    blocks += [Block("h2", "Every run"), _runs_table(results)]
    if command:
        blocks += [Block("h2", "Reproduce"), Block("code", command)]
    return blocks


def _protocol(results: dict) -> str:
    """How runs chose their settings: on dev, or (``--tune``) on a slice of their own labels."""
    tune = results.get("tune")
    if not tune:
        return (
            "Every run trains on a stratified fraction of the same training split, picks its best "
            "epoch on the same dev split and is scored once on the same test split."
        )
    return (
        "Every run trains on a stratified fraction of the same training split and is tuned with "
        f"the same budget ({TuneSpec(**{**tune, 'grid': tuple(tune['grid'])}).describe()}): "
        f"{1 - tune['validation']:.0%} of its labels train, the other {tune['validation']:.0%} choose "
        "the learning rate, the epoch and when to stop (the TF-IDF reference's C likewise); the best "
        "candidate is the run's model. The dev and test splits choose nothing; figures are scored "
        "once on test."
    )


def _gap_blocks(results: dict) -> list[Block]:
    """Every pair of recipes at every fraction: the gap with its paired bootstrap interval."""
    names = recipe_order(results)
    rows = []
    pair = init_only_pair(results)
    adapted = adapted_pair(results)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            note = ""
            if pair and {a, b} == set(pair):
                note = "same architecture; differ in initialisation"
            elif adapted and {a, b} == set(adapted):
                note = "differ only in domain-adaptive pretraining"
            cells_ = []
            for f in fractions(results):
                ci = gap_ci(results, a, b, f)
                cells_.append("—" if ci is None else ci.fmt() + (" tie" if ci.tie else ""))
            if any(c != "—" for c in cells_):
                rows.append([f"{a} − {b}", note or "—", *cells_])
    if not rows:
        return []
    return [
        Block("h2", "Gaps and their confidence intervals"),
        Block(
            "p",
            "Test macro-F1 points, first recipe minus second, mean over the seeds both ran, with a "
            f"95% paired bootstrap interval (test {items(results)} and seed pairs resampled, 2,000 times; "
            "tunewise.compare.stats). An interval that includes zero is a tie.",
        ),
        Block(
            "table",
            header=["gap", "pair", *[fmt_fraction(f) for f in fractions(results)]],
            rows=rows,
        ),
    ]


def _shortcut_blocks(results: dict) -> list[Block]:
    """The shortcut audit of the training split (``tunewise.data.shortcuts``)."""
    audit = results.get("shortcut_audit")
    if not audit:
        return []
    text = (
        f"A logistic regression on surface features only (length, shares of digits, Latin letters and "
        f"punctuation, 【】 headers, links by kind, phones, masking placeholders, first and last "
        f"character) reaches macro-F1 {audit['macro_f1']:.3f} in {audit['folds']}-fold cross-validation "
        f"on the training split (majority class: {audit['majority_macro_f1']:.3f})."
    )
    if audit["warning"]:
        separated = audit.get("separated_classes") or []
        which = f" — {', '.join(separated)} by form alone" if separated else ""
        text += (
            f" Warning: the classes differ in form{which}. A model can score well on this data "
            "without reading the messages; the out-of-domain figures say more about the world."
        )
    elif audit.get("note"):
        text += " Surface features carry much of the signal: the out-of-domain figures matter here."
    markers = sorted({m for rates in audit["marker_rates"].values() for m in rates})
    rows = [
        [label, f"{audit['per_class_f1'].get(label, 0):.2f}", ", ".join(audit["top_features"].get(label, []))]
        + [f"{audit['marker_rates'][label][m]:.0%}" for m in markers]
        for label in audit["marker_rates"]
    ]
    return [
        Block("h2", "Shortcut audit"),
        Block("p", text),
        Block("table", header=["label", "surface-only F1", "carried by", *markers], rows=rows),
    ]


def _out_of_domain_blocks(results, names, table, fr, top, images) -> list[Block]:
    """A table per extra test set (its headline figure per recipe and fraction) and the share of
    each of its labels flagged, at the largest fraction."""
    sets = test_sets(results)
    if not sets:
        return []
    blocks = [
        Block("h2", "Out of domain: the extra test sets"),
        Block(
            "p",
            "The same runs scored on data they were not drawn from — "
            + ", ".join(f"{n} ({results.get('test_sets', {}).get(n, '?')})" for n in sets)
            + ": fraud vs not, from the fraud score. ROC-AUC where a set has both; on a set of "
            "legitimate messages only, the share not flagged. Neural models flag at their threshold "
            "(0.5 without one), TF-IDF by its arg-max label.",
        ),
    ]
    for name, metric in sets.items():
        key = ("ood", name, "headline")
        blocks.append(
            Block(
                "table",
                header=[f"{name}: {metric}"] + [fmt_fraction(f) for f in fr],
                rows=[[n] + [fmt_score(table.get((n, f)), key) for f in fr] for n in names],
            )
        )
        labels = sorted(
            {
                lab
                for r in results["runs"]
                for lab in ((r.get("ood") or {}).get(name) or {}).get("per_label", {})
            }
        )
        if top is not None and labels:
            rows = []
            for n in names:
                c = table.get((n, top))
                row = [n]
                for lab in labels:
                    v = c.mean(("ood", name, "per_label", lab, "flagged_rate")) if c else None
                    row.append("—" if v is None else f"{v:.1%}")
                rows.append(row)
            blocks.append(
                Block(
                    "table",
                    header=[f"{name}: share flagged at {fmt_fraction(top)}"] + labels,
                    rows=rows,
                )
            )
    if "in_vs_out" in images:
        blocks.append(Block("img", str(images["in_vs_out"]), items=["in-domain vs out-of-domain"]))
    return blocks


def _size(table, names, f) -> float:
    return max((table[(n, f)].train_size for n in names if (n, f) in table), default=0.0)


def _regimes_table(results, names, table, fr, top) -> Block:
    described = {n: describe_recipe(results, n) for n in names}
    aspects = list(next(iter(described.values())).keys()) if described else []
    rows = [[a] + [described[n][a] for n in names] for a in aspects]
    for f in fr:
        rows.append([f"test macro-F1 at {fmt_fraction(f)}"] + [fmt_score(table.get((n, f))) for n in names])
    if top is not None:

        def mean_of(n, key, fmt):
            c = table.get((n, top))
            v = c.mean(key) if c else None
            return fmt(v) if v is not None else "—"

        rows += [
            ["training time"] + [mean_of(n, "train_seconds", lambda v: f"{v:,.1f} s") for n in names],
            ["trainable / total parameters"]
            + [
                f"{mean_of(n, 'trainable_params', fmt_count)} / {mean_of(n, 'total_params', fmt_count)}"
                for n in names
            ],
            ["peak memory (process RSS)"]
            + [mean_of(n, "peak_memory_mb", lambda v: f"{v:,.0f} MiB") for n in names],
        ]
    return Block("table", header=["aspect"] + names, rows=rows)


def _runs_table(results: dict) -> Block:
    header = [
        "recipe",
        "fraction",
        "seed",
        "train msgs",
        "test macro-F1",
        "test acc",
        "best epoch",
        "train s",
        "peak MiB",
    ]
    tuned = any(r.get("tuning") for r in results["runs"])
    if tuned:
        header.append("tuned (validation score per candidate, * chosen)")
    sets = test_sets(results)  # one column per extra test set: its headline figure
    header += [f"{name}: {metric}" for name, metric in sets.items()]
    rows = []
    for r in sorted(results["runs"], key=lambda r: (r["recipe"], r["fraction"], r["seed"])):
        rows.append(
            [
                r["recipe"],
                fmt_fraction(r["fraction"]),
                str(r["seed"]),
                f"{r['train_size']:,}",
                f"{r['test_macro_f1']:.4f}",
                f"{r['test_accuracy']:.4f}",
                str(r.get("best_epoch") or "—"),
                f"{r['train_seconds']:,.1f}",
                f"{r['peak_memory_mb']:,.0f}",
            ]
            + ([describe_tuning(r)] if tuned else [])
            + [_headline(r, name) for name in sets]
        )
    return Block("table", header=header, rows=rows)


def _headline(run: dict, name: str) -> str:
    value = ((run.get("ood") or {}).get(name) or {}).get("headline")
    return "—" if value is None else f"{value:.4f}"


def render_markdown(blocks: list[Block], base: Path) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            lines += [f"# {b.text}", ""]
        elif b.kind == "h2":
            lines += [f"## {b.text}", ""]
        elif b.kind == "p":
            lines += [b.text, ""]
        elif b.kind == "ul":
            lines += [f"- {item}" for item in b.items or []] + [""]
        elif b.kind == "code":
            lines += ["```bash", b.text, "```", ""]
        elif b.kind == "img":
            rel = Path(b.text).relative_to(base) if Path(b.text).is_relative_to(base) else Path(b.text)
            lines += [f"![{(b.items or [''])[0]}]({rel.as_posix()})", ""]
        elif b.kind == "table":
            header = b.header or []
            lines.append("| " + " | ".join(cell(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b.rows or []]
            lines.append("")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}li{margin:.3em 0}
"""


def render_html(blocks: list[Block]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(blocks[0].text if blocks else 'tunewise report')}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        if b.kind in ("h1", "h2", "p"):
            parts.append(f"<{b.kind}>{esc(b.text)}</{b.kind}>")
        elif b.kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in b.items or []) + "</ul>")
        elif b.kind == "code":
            parts.append(f"<pre><code>{esc(b.text)}</code></pre>")
        elif b.kind == "img":
            data = base64.b64encode(Path(b.text).read_bytes()).decode("ascii")
            alt = esc((b.items or [""])[0])
            parts.append(f'<p><img alt="{alt}" src="data:image/png;base64,{data}"></p>')
        elif b.kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in b.header or [])
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in b.rows or []
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results: dict, out: str | Path, command: str | None = None) -> dict[str, Path]:
    """Plots, ``report.md`` and ``report.html`` into ``out``; returns the files written.

    Example:
        >>> files = write_report(load_results("runs/cmp"), "runs/cmp")  # doctest: +SKIP
        >>> sorted(files)  # doctest: +SKIP
        ['html', 'learning_curve', 'markdown', ...]
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, Path] = {}
    if results["runs"]:
        images["learning_curve"] = out / "learning_curve.png"
        plot_learning_curve(results, images["learning_curve"])
        if plot_in_vs_out_of_domain(results, out / "in_vs_out_of_domain.png"):
            images["in_vs_out"] = out / "in_vs_out_of_domain.png"
        curves = out / "training_curves.png"
        if plot_training_curves(results, curves):
            images["training_curves"] = curves
        for name, path in plot_confusions(results, out):
            images[f"confusion:{name}"] = path
    blocks = build_blocks(results, images, command)
    md, page = out / "report.md", out / "report.html"
    md.write_text(render_markdown(blocks, out), encoding="utf-8")
    page.write_text(render_html(blocks), encoding="utf-8")
    return {"markdown": md, "html": page, **images}


def print_comparison(results: dict, console) -> None:
    """The test macro-F1 table and the verdict, on a terminal (a rich ``Console``)."""
    from rich.markup import escape
    from rich.table import Table

    fr = fractions(results)
    grid = cells(results)
    table = Table(title="test macro-F1 (mean ± sd over seeds)")
    table.add_column("recipe")
    for f in fr:
        table.add_column(f"{fmt_fraction(f)} of labels", justify="right")
    for name in recipe_order(results):
        table.add_row(escape(name), *[fmt_score(grid.get((name, f))) for f in fr])
    console.print(table)
    for line in verdict(results):
        console.print(f"• {escape(line)}")
