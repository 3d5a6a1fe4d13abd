"""From a comparison's runs to what a reader needs: per-cell statistics, the note's
comparison table filled with what the recipes actually did, and a verdict in words.

Everything here is computed from ``results.json``; nothing is typed in by hand.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunewise.compare.stats import GapCI, paired_gap
from tunewise.compare.worker import TFIDF

# a gap smaller than this many macro-F1 points, or than the seed-to-seed spread, is a tie
TIE_POINTS = 1.0


@dataclass
class Cell:
    """All seeds of one recipe at one label fraction."""

    recipe: str
    fraction: float
    runs: list[dict]

    def _values(self, key: str | tuple[str, ...]) -> list[float]:
        """``key`` names a run field, or a path into nested ones: ``("ood", "spam", "headline")``."""
        path = (key,) if isinstance(key, str) else key
        values = []
        for run in self.runs:
            value = run
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                values.append(float(value))
        return values

    def mean(self, key: str | tuple[str, ...]) -> float | None:
        values = self._values(key)
        return statistics.fmean(values) if values else None

    def sd(self, key: str | tuple[str, ...]) -> float:
        values = self._values(key)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def train_size(self) -> float:
        return self.mean("train_size") or 0.0


def cells(results: dict) -> dict[tuple[str, float], Cell]:
    """Runs grouped by (recipe, fraction).

    Example:
        >>> runs = [{"recipe": "a", "fraction": 0.1, "test_macro_f1": f} for f in (0.5, 0.7)]
        >>> c = cells({"runs": runs})[("a", 0.1)]
        >>> round(c.mean("test_macro_f1"), 2), round(c.sd("test_macro_f1"), 3)
        (0.6, 0.141)
    """
    grouped: dict[tuple[str, float], list[dict]] = {}
    for run in results["runs"]:
        grouped.setdefault((run["recipe"], float(run["fraction"])), []).append(run)
    return {k: Cell(k[0], k[1], v) for k, v in grouped.items()}


def recipe_order(results: dict) -> list[str]:
    present = {r["recipe"] for r in results["runs"]}
    order = [n for n in results.get("order", []) if n in present]
    return order + sorted(present - set(order))


def test_sets(results: dict) -> dict[str, str]:
    """The extra test sets some run was scored on, with the figure each is summarised by.

    Example:
        >>> test_sets({"runs": [{"ood": {"spam": {"headline_metric": "ROC-AUC"}}}]})
        {'spam': 'ROC-AUC'}
    """
    found: dict[str, str] = {}
    for run in results["runs"]:
        for name, summary in (run.get("ood") or {}).items():
            found.setdefault(name, summary.get("headline_metric", "ROC-AUC"))
    return found


def fractions(results: dict) -> list[float]:
    return sorted({float(r["fraction"]) for r in results["runs"]})


def init_of(results: dict, recipe: str) -> str | None:
    """'pretrained', 'random', or None for the TF-IDF reference."""
    spec = results.get("recipes", {}).get(recipe)
    return spec["model"]["init"] if spec else None


def fmt_count(n: float | None) -> str:
    """Compact counts: 5,120 -> '5.1 k', 4,915,374 -> '4.9 M'.

    Example:
        >>> fmt_count(4_915_374), fmt_count(980), fmt_count(12_345)
        ('4.9 M', '980', '12.3 k')
    """
    if n is None:
        return "—"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e4:
        return f"{n / 1e3:.1f} k"
    return f"{n:,.0f}"


def fmt_fraction(f: float) -> str:
    """A label fraction as a percentage.

    Example:
        >>> fmt_fraction(0.01), fmt_fraction(0.005), fmt_fraction(1.0)
        ('1%', '0.5%', '100%')
    """
    return f"{f * 100:.3g}%"


def fmt_score(cell: Cell | None, key: str | tuple[str, ...] = "test_macro_f1") -> str:
    if cell is None or cell.mean(key) is None:
        return "—"
    spread = f" ± {cell.sd(key):.3f}" if len(cell.runs) > 1 else ""
    return f"{cell.mean(key):.3f}{spread}"


def _lr(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")


def describe_recipe(results: dict, recipe: str) -> dict[str, str]:
    """The note's aspects for one recipe, read from the recipe and from what its runs did."""
    if recipe == TFIDF:
        return {
            "initialisation": "none: a convex fit, no weights to initialise",
            "model": "TF-IDF over character 1-3-grams + linear SVM (scikit-learn)",
            "frozen parameters": "—",
            "optimizer and learning rates": "LinearSVC; C from {0.1, 1, 10} chosen on "
            + ("each run's validation slice" if results.get("tune") else "dev")
            + " macro-F1",
            "schedule": "—",
            "stages": "one fit",
            "epochs": "—",
            "augmentation": "none",
        }
    spec = results["recipes"][recipe]
    model = spec["model"]
    runs = [r for r in results["runs"] if r["recipe"] == recipe]
    total = runs[0].get("total_params") if runs else None
    if model["init"] == "pretrained":
        source = next((r.get("weights_source") for r in runs if r.get("weights_source")), None)
        encoder = source or results.get("pretrained") or "the default encoder"
        if Path(encoder).exists():  # a local directory or weights file: its name says enough
            encoder = Path(encoder).name
        init = f"pretrained weights ({encoder}) + new {model['head']['type']} head"
    else:
        arch = {
            "textcnn": "TextCNN",
            "customcnn": "the note's CustomCNN",
            "auto": "the encoder's architecture",
        }.get(model["architecture"], model["architecture"])
        init = f"random weights ({arch})"
    opt = spec["optimizer"]
    lrs = [f"{opt['name']} {_lr(opt['lr'])}"]
    for group in spec.get("param_groups", []):
        rate = _lr(group["lr"]) if group.get("lr") else f"x{group.get('lr_scale', 1)}"
        lrs.append(f"{'/'.join(group['modules'])} {rate}")
    if spec.get("layerwise_lr_decay"):
        lrs.append(f"layer-wise decay {spec['layerwise_lr_decay']}")
    stages = spec.get("stages") or [{"name": "train", "epochs": spec["epochs"], "trainable": "all"}]
    stage_text = []
    for s in stages:
        what = s.get("trainable") or (
            "unfreeze " + ", ".join(s["unfreeze"]) if s.get("unfreeze") else "as before"
        )
        scale = f", LR x{s['lr_scale']}" if s.get("lr_scale", 1.0) != 1.0 else ""
        stage_text.append(f"{s['name']}: {s['epochs']} ep, {what}{scale}")
    frozen = "none"
    logged = runs[0].get("stages") if runs else None
    if spec["freeze"]["modules"] or spec["freeze"].get("first_n_groups"):
        what = (
            ", ".join(spec["freeze"]["modules"]) or f"first {spec['freeze']['first_n_groups']} layer groups"
        )
        frozen = f"{what} frozen at the start"
        if logged and total:
            frozen += (
                " ("
                + "; ".join(
                    f"{s['stage']}: {fmt_count(s['trainable_params'])} of {fmt_count(total)} train"
                    for s in logged
                )
                + ")"
            )
    sched = spec["scheduler"]
    sched_text = sched["name"]
    if sched["name"] == "plateau":
        sched_text = f"ReduceLROnPlateau (factor {sched['factor']}, patience {sched['patience']})"
    elif sched["name"] == "linear_warmup":
        sched_text = f"linear warm-up {sched['warmup_ratio']:.0%} then linear decay, per stage"
    best = [r["best_epoch"] for r in runs if r.get("best_epoch")]
    ran = [r["epochs_run"] for r in runs if r.get("epochs_run")]
    epochs = f"up to {spec['epochs']}"
    if spec.get("early_stopping"):
        epochs += f", early stopping (patience {spec['early_stopping']['patience']})"
    if results.get("tune"):
        lrs.append("tuned per run (every run table)")
        epochs += "; stretched per run to the tuning budget"
    if best:
        epochs += (
            f"; measured: best epoch {statistics.fmean(best):.1f}, ran {statistics.fmean(ran):.1f} (mean)"
        )
    return {
        "initialisation": init,
        "model": f"{fmt_count(total)} parameters, max {model['max_length']} tokens",
        "frozen parameters": frozen,
        "optimizer and learning rates": ", ".join(lrs) + f"; batch {spec['batch_size']}",
        "schedule": sched_text,
        "stages": " → ".join(stage_text),
        "epochs": epochs,
        "augmentation": spec["augmentation"],
    }


@dataclass
class Gap:
    fraction: float
    per_class: float  # labelled training messages per class
    points: float  # fine-tune minus scratch, macro-F1 points
    noise: float  # the larger seed-to-seed spread of the two, in points
    # paired bootstrap interval (compare.stats); None for runs saved without test predictions
    ci: GapCI | None = None

    def __post_init__(self) -> None:
        if self.ci is not None:  # the paired figure: seeds both recipes ran, on the same messages
            self.points = self.ci.points

    @property
    def outcome(self) -> str:
        """'tie' when the 95% interval includes zero (or, without one, when the gap is within
        the seed spread or TIE_POINTS); otherwise which side is ahead."""
        if self.ci is not None:  # the interval's side, not the point's (they can disagree)
            return "tie" if self.ci.tie else ("finetune" if self.ci.low > 0 else "scratch")
        if abs(self.points) <= max(TIE_POINTS, self.noise):
            return "tie"
        return "finetune" if self.points > 0 else "scratch"

    def fmt(self) -> str:
        return self.ci.fmt() if self.ci is not None else f"{self.points:+.1f}"


def gap_ci(results: dict, a: str, b: str, fraction: float) -> GapCI | None:
    """The paired bootstrap interval of macro-F1(a) - macro-F1(b) at ``fraction`` over the
    seeds both have run, or None when the runs carry no test predictions."""
    gold = results.get("test_labels")
    if not gold:
        return None

    def by_seed(recipe: str) -> dict[int, list[int]]:
        return {
            r["seed"]: r["test_predictions"]
            for r in results["runs"]
            if r["recipe"] == recipe and float(r["fraction"]) == fraction and r.get("test_predictions")
        }

    pa, pb = by_seed(a), by_seed(b)
    seeds = sorted(set(pa) & set(pb))
    if not seeds:
        return None
    return paired_gap(
        np.asarray(gold),
        [np.asarray(pa[s]) for s in seeds],
        [np.asarray(pb[s]) for s in seeds],
        n_labels=len(results["labels"]),
    )


def gaps(results: dict, finetune: str, scratch: str) -> list[Gap]:
    """``finetune`` minus ``scratch`` at each fraction both have run."""
    table = cells(results)
    return [
        cell_gap(results, table, finetune, scratch, f)
        for f in fractions(results)
        if (finetune, f) in table and (scratch, f) in table
    ]


def cell_gap(results: dict, table: dict[tuple[str, float], Cell], a: str, b: str, f: float) -> Gap:
    """Recipe ``a`` minus recipe ``b`` at fraction ``f`` (both must have run there): the means,
    the seed spread and, when the runs kept their test predictions, the paired interval."""
    ca, cb = table[(a, f)], table[(b, f)]
    return Gap(
        f,
        ca.train_size / max(1, len(results.get("labels", []))),
        100 * (ca.mean("test_macro_f1") - cb.mean("test_macro_f1")),
        100 * max(ca.sd("test_macro_f1"), cb.sd("test_macro_f1")),
        gap_ci(results, a, b, f),
    )


def init_only_pair(results: dict) -> tuple[str, str] | None:
    """(pretrained, random) recipes with the same architecture and no domain adaptation: the
    pair whose gap is what pretrained weights are worth."""
    names = [n for n in recipe_order(results) if n != TFIDF]
    specs = results.get("recipes", {})

    def arch(n: str) -> str | None:
        spec = specs.get(n) or {}
        return (spec.get("model") or {}).get("architecture")

    pretrained = [
        n
        for n in names
        if init_of(results, n) == "pretrained"
        and not specs[n].get("domain_adaptation")
        and not (specs[n].get("model") or {}).get("lora")  # adapters: a strategy, not the init
    ]
    random = [n for n in names if init_of(results, n) == "random"]
    for p in pretrained:
        for r in random:
            if arch(p) == arch(r) == "auto":
                return p, r
    return None


def adapted_pair(results: dict) -> tuple[str, str] | None:
    """(recipe with domain adaptation, the same recipe without it), when both ran."""
    names = [n for n in recipe_order(results) if n != TFIDF]
    specs = {n: results.get("recipes", {}).get(n) or {} for n in names}

    def rest(spec: dict) -> dict:
        return {k: v for k, v in spec.items() if k not in ("domain_adaptation", "name", "description")}

    for n in names:
        if not specs[n].get("domain_adaptation"):
            continue
        for m in names:
            if m != n and not specs[m].get("domain_adaptation") and rest(specs[m]) == rest(specs[n]):
                return n, m
    return None


def _mean_on(cell: Cell, seeds: set[int]) -> float:
    """Mean test macro-F1 of ``cell`` over ``seeds`` (over all its seeds when it has none of them)."""
    runs = [r for r in cell.runs if r["seed"] in seeds] or cell.runs
    return statistics.fmean(r["test_macro_f1"] for r in runs)


def best_per_budget(results: dict) -> list[tuple[float, str, list[str], dict[str, Gap]]]:
    """At each fraction: the recipe with the best mean test macro-F1, the recipes the data
    cannot separate from it (the 95% interval of their gap includes zero), and every gap."""
    table = cells(results)
    names = recipe_order(results)
    out = []
    for f in fractions(results):
        present = [n for n in names if (n, f) in table]
        if len(present) < 2:
            continue
        # the best on the seeds every recipe has run (a comparison still running can have
        # more seeds of one recipe than of another; a mean over more seeds is not comparable)
        common = set.intersection(*({r["seed"] for r in table[(n, f)].runs} for n in present))
        best = max(present, key=lambda n: _mean_on(table[(n, f)], common))  # noqa: B023 (used at once)
        gaps_here = {n: cell_gap(results, table, best, n, f) for n in present if n != best}
        tied = [n for n, g in gaps_here.items() if g.outcome == "tie"]
        out.append((f, best, tied, gaps_here))
    return out


def items(results: dict) -> str:
    """What the comparison's examples are, for its sentences: messages, or images.

    Example:
        >>> items({"track": "image"}), items({})
        ('images', 'messages')
    """
    return "images" if results.get("track") == "image" else "messages"


def _budget_lines(results: dict) -> list[str]:
    """The new verdict lines: what pretrained weights are worth (the init-only pair), what
    domain adaptation adds, and which recipes are best at each budget within the intervals."""
    lines: list[str] = []

    def listed(gs: list[Gap]) -> str:
        text = ", ".join(f"{g.fmt()} points at {fmt_fraction(g.fraction)}" for g in gs)
        return text + (
            f" (95% paired bootstrap interval over test {items(results)} and seeds)" if gs[0].ci else ""
        )

    pair = init_only_pair(results)
    if pair and (gs := gaps(results, *pair)):
        lines.append(
            f"{pair[0]} and {pair[1]} share the architecture and differ in initialisation (each keeping "
            f"its regime's schedule): pretrained weights are worth {listed(gs)}."
        )
    adapted = adapted_pair(results)
    if adapted and (gs := gaps(results, *adapted)):
        lines.append(
            f"Domain-adaptive pretraining on the training texts ({adapted[0]} minus {adapted[1]}): "
            f"{listed(gs)}."
        )
    table = cells(results)
    for f, best, tied, gaps_here in best_per_budget(results):
        cell = table[(best, f)]
        text = (
            f"At {fmt_fraction(f)} of the labels (~{cell.train_size:,.0f} labelled {items(results)}) "
            f"{best} is best ({cell.mean('test_macro_f1'):.3f})"
        )
        behind = [f"{n} by {g.fmt()}" for n, g in gaps_here.items() if g.outcome != "tie"]
        if behind:
            text += ", ahead of " + ", ".join(behind)
        if tied:
            text += "; a tie with " + ", ".join(f"{n} ({gaps_here[n].fmt()})" for n in tied)
            cheapest = min([best, *tied], key=lambda n: table[(n, f)].mean("train_seconds") or float("inf"))
            if cheapest != best:
                text += f", of which {cheapest} trains fastest"
        lines.append(text + " (macro-F1 points, best minus other).")
    return lines


def verdict(results: dict) -> list[str]:
    """Plain-language conclusions computed from the runs (one sentence per item).

    Example:
        >>> runs = [
        ...     {"recipe": r, "fraction": f, "seed": 0, "test_macro_f1": s, "train_size": n,
        ...      "train_seconds": t}
        ...     for r, f, s, n, t in [("scratch", 0.1, 0.50, 20, 10), ("finetune", 0.1, 0.80, 20, 60),
        ...                           ("scratch", 1.0, 0.95, 200, 40), ("finetune", 1.0, 0.955, 200, 300)]]
        >>> recipes = {"scratch": {"model": {"init": "random"}},
        ...            "finetune": {"model": {"init": "pretrained"}}}
        >>> import textwrap
        >>> lines = verdict({"runs": runs, "recipes": recipes, "labels": ["a", "b"]})
        >>> print("\\n".join(textwrap.fill(line, 100) for line in lines))
        With up to ~10 labelled messages per class, fine-tuning (finetune) beats training from scratch
        (scratch) by 30.0 points of test macro-F1.
        With all the training labels (~100 per class) the two are within noise (+0.5 points, fine-tuning
        minus scratch).
        scratch trains 7.5x faster than finetune (mean 40 s vs 300 s with all labels).
        At 10% of the labels (~20 labelled messages) finetune is best (0.800), ahead of scratch by +30.0
        (macro-F1 points, best minus other).
        At 100% of the labels (~200 labelled messages) finetune is best (0.955); a tie with scratch (+0.5),
        of which scratch trains fastest (macro-F1 points, best minus other).
        Recommendation: fine-tune when you have up to ~10 labelled messages per class; from ~100 per class
        on, scratch is as accurate and cheaper.
    """
    names = recipe_order(results)
    finetune = next((n for n in names if init_of(results, n) == "pretrained"), None)
    scratch = next((n for n in names if init_of(results, n) == "random"), None)
    table = cells(results)
    fr = fractions(results)
    lines: list[str] = []
    if finetune and scratch:
        gs = gaps(results, finetune, scratch)
        leading = []
        for g in gs:  # the run of fine-tuning wins from the smallest budget up
            if g.outcome != "finetune":
                break
            leading.append(g)
        if leading:
            lo, hi = min(g.points for g in leading), max(g.points for g in leading)
            by = f"{lo:.1f}" if abs(hi - lo) < 0.05 else f"{lo:.1f}–{hi:.1f}"
            lines.append(
                f"With up to ~{leading[-1].per_class:,.0f} labelled {items(results)} per class, "
                f"fine-tuning ({finetune}) beats training from scratch ({scratch}) by {by} points "
                "of test macro-F1."
            )
        elif gs:
            lines.append(
                f"Fine-tuning ({finetune}) does not beat training from scratch ({scratch}) at the smallest "
                f"budget (~{gs[0].per_class:,.0f} labels per class): {gs[0].points:+.1f} points."
            )
        if gs:
            last = gs[-1]
            where = (
                "all the training labels"
                if last.fraction >= 1
                else f"{fmt_fraction(last.fraction)} of the labels"
            )
            favour = "fine-tuning" if last.points > 0 else "training from scratch"
            if last.outcome == "tie":
                lines.append(
                    f"With {where} (~{last.per_class:,.0f} per class) the two are within noise "
                    f"({last.fmt()} points, fine-tuning minus scratch)."
                )
            else:
                interval = f" ({last.fmt()}, fine-tuning minus scratch)" if last.ci else ""
                lines.append(
                    f"With {where} (~{last.per_class:,.0f} per class) {favour} is ahead by "
                    f"{abs(last.points):.1f} points{interval}."
                )
            a, b = table[(finetune, last.fraction)], table[(scratch, last.fraction)]
            ta, tb = a.mean("train_seconds"), b.mean("train_seconds")
            if ta and tb:
                faster, slower, fast_t, slow_t = (
                    (scratch, finetune, tb, ta) if tb < ta else (finetune, scratch, ta, tb)
                )
                lines.append(
                    f"{faster} trains {slow_t / fast_t:.1f}x faster than {slower} "
                    f"(mean {fast_t:,.0f} s vs {slow_t:,.0f} s with "
                    f"{where.replace('all the training', 'all')})."
                )
    neural = [n for n in names if n != TFIDF]
    if TFIDF in names and neural and fr:
        versus: list[tuple[Gap, str]] = []  # TF-IDF minus the best neural recipe, per budget
        for f in fr:
            present = [n for n in neural if (n, f) in table]
            base = table.get((TFIDF, f))
            if base is None or not present:
                continue
            best = max(present, key=lambda n: table[(n, f)].mean("test_macro_f1") or 0.0)  # noqa: B023
            versus.append((cell_gap(results, table, TFIDF, best, f), best))
        if versus:
            count = {o: sum(g.outcome == o for g, _ in versus) for o in ("finetune", "tie", "scratch")}
            detail = ", ".join(f"{g.fmt()} at {fmt_fraction(g.fraction)} vs {n}" for g, n in versus)
            lines.append(
                f"The TF-IDF + linear SVM reference is ahead of the best neural recipe at "
                f"{count['finetune']} of {len(versus)} label budgets, tied at {count['tie']} and behind "
                f"at {count['scratch']} (points, TF-IDF minus the best neural recipe: {detail})."
            )
    if finetune and scratch:
        gs = gaps(results, finetune, scratch)
        if gs and all(g.outcome == "finetune" for g in gs):
            lines.append("Recommendation: fine-tune at every label budget measured here.")
        elif gs and gs[0].outcome == "finetune":
            turn = next(g for g in gs if g.outcome != "finetune")
            last_win = max(g.per_class for g in gs if g.outcome == "finetune" and g.fraction < turn.fraction)
            a, b = table[(finetune, gs[-1].fraction)], table[(scratch, gs[-1].fraction)]
            cheaper = (b.mean("train_seconds") or 0) < (a.mean("train_seconds") or 0)
            rest = "is as accurate" if turn.outcome == "tie" else "is more accurate"
            rest += " and cheaper" if cheaper else ""
            lines.append(
                f"Recommendation: fine-tune when you have up to ~{last_win:,.0f} labelled {items(results)} "
                f"per class; from ~{turn.per_class:,.0f} per class on, scratch {rest}."
            )
        elif gs and all(g.outcome != "finetune" for g in gs):
            lines.append(
                "Recommendation: on this data fine-tuning does not pay for itself; train from scratch "
                "(or check the fine-tuning recipe's learning rates for this pretrained network)."
            )
        elif gs:
            won = ", ".join(fmt_fraction(g.fraction) for g in gs if g.outcome == "finetune")
            lines.append(
                f"Recommendation: mixed — fine-tuning wins only at {won} of the labels; look at the "
                "learning curve and the seed spread before choosing."
            )
    at = next((i for i, line in enumerate(lines) if line.startswith("Recommendation")), len(lines))
    if at < len(lines) and TFIDF in names and neural and fr:
        lines[at] = _weigh_reference(lines[at], versus, table)
    return lines[:at] + _budget_lines(results) + generalisation(results) + lines[at:]


def _weigh_reference(recommendation: str, versus: list, table: dict) -> str:
    """The regimes' recommendation, weighed against the TF-IDF reference: where the reference
    is as accurate as the best neural recipe (ahead, or within noise), it is the cheaper
    choice and the recommendation says so — with its training time beside theirs."""
    level = [(g, n) for g, n in versus if g.outcome != "scratch"]  # TF-IDF ahead or tied
    if not level:
        return recommendation
    regimes = recommendation.removeprefix("Recommendation: ")

    def seconds(name: str, fraction: float) -> float:
        return table[(name, fraction)].mean("train_seconds") or 0.0

    detail = "; ".join(
        f"{fmt_fraction(g.fraction)}: {g.fmt()} points vs {n}, "
        f"{seconds(TFIDF, g.fraction):.1f} s vs {seconds(n, g.fraction):,.0f} s of training"
        for g, n in level
    )
    if len(level) == len(versus):
        return (
            "Recommendation: the TF-IDF + linear SVM reference is as accurate as the best neural "
            f"recipe at every label budget measured here, for a fraction of the training ({detail}) — "
            f"start with it. Between the two neural regimes: {regimes[0].lower() + regimes[1:]}"
        )
    budgets = ", ".join(fmt_fraction(g.fraction) for g, _ in level)
    return (
        f"{recommendation} Except at {budgets} of the labels: there the TF-IDF + linear SVM reference "
        f"is as accurate or more, for a fraction of the training ({detail}) — prefer it there."
    )


def generalisation(results: dict) -> list[str]:
    """Which regime holds up on each extra (out-of-domain) test set, beside which wins in domain.

    Example:
        >>> runs = [{"recipe": r, "fraction": 1.0, "seed": 0, "test_macro_f1": f,
        ...          "ood": {"real": {"headline": a, "headline_metric": "ROC-AUC"}}}
        ...         for r, f, a in [("scratch", 0.98, 0.62), ("finetune", 0.97, 0.81)]]
        >>> recipes = {"scratch": {"model": {"init": "random"}},
        ...            "finetune": {"model": {"init": "pretrained"}}}
        >>> import textwrap
        >>> print(textwrap.fill(generalisation({"runs": runs, "recipes": recipes})[0], 90))
        Out of domain (real, ROC-AUC, all the labels): finetune 0.810, scratch 0.620 — finetune
        generalises best, while scratch is best in domain (test macro-F1 0.980).
    """
    table = cells(results)
    names = recipe_order(results)
    fr = fractions(results)
    if not fr:
        return []
    top = fr[-1]
    where = "all the labels" if top >= 1 else f"{fmt_fraction(top)} of the labels"
    lines = []
    for name, metric in test_sets(results).items():
        key = ("ood", name, "headline")
        scored = [(table[(n, top)].mean(key), n) for n in names if (n, top) in table]
        scored = sorted(((v, n) for v, n in scored if v is not None), reverse=True)
        if not scored:
            continue
        in_domain = max(
            ((table[(n, top)].mean("test_macro_f1") or 0.0, n) for n in names if (n, top) in table),
        )
        listed = ", ".join(f"{n} {v:.3f}" for v, n in scored)
        best_v, best = scored[0]
        noise = max(table[(best, top)].sd(key), 0.01)
        tied = [n for v, n in scored[1:] if best_v - v <= noise]
        if tied:
            claim = f"{best} and {', '.join(tied)} are within noise of each other"
        else:
            claim = f"{best} generalises best"
        if in_domain[1] == best:
            claim += f"; {best} is also best in domain" if tied else ", and is also best in domain"
        else:
            claim += f", while {in_domain[1]} is best in domain (test macro-F1 {in_domain[0]:.3f})"
        lines.append(f"Out of domain ({name}, {metric}, {where}): {listed} — {claim}.")
        finetune = next((n for n in names if init_of(results, n) == "pretrained"), None)
        scratch = next((n for n in names if init_of(results, n) == "random"), None)
        if finetune and scratch and len(fr) > 1:
            ahead = []
            for f in fr:
                a, b = table.get((finetune, f)), table.get((scratch, f))
                va, vb = (a.mean(key) if a else None), (b.mean(key) if b else None)
                if va is not None and vb is not None:
                    ahead.append(f"{va - vb:+.3f} at {fmt_fraction(f)}")
            if ahead:
                lines.append(
                    f"On {name}, fine-tuning ({finetune}) minus scratch ({scratch}), {metric}: "
                    + ", ".join(ahead)
                    + "."
                )
    return lines
