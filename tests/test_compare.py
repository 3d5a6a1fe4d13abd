"""`tunewise compare`: real runs (TextCNN from scratch, the bundled encoder fine-tuned, the
TF-IDF reference) on a small slice of the embedded sample set, the report, resumption."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunewise.compare import CompareError, CompareOptions, load_results, run_comparison, write_report
from tunewise.compare.report import build_blocks, render_html
from tunewise.compare.runs import RESULTS_FILE
from tunewise.compare.summary import verdict
from tunewise.ood import TestSet
from tunewise.recipes.schema import load_recipe
from tunewise.samples import sample_sms_path
from tunewise.training.checkpoint import latest_checkpoint

from .conftest import make_messages, write_csv


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """50 normal + 50 fraud messages of the sample set."""
    with sample_sms_path().open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = [r for r in rows if r["label"] == "normal"][:50] + [r for r in rows if r["label"] == "fraud"][
        :50
    ]
    path = tmp_path_factory.mktemp("data") / "small.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(chosen)
    return path


def _options(data: Path, out: Path, **kw) -> CompareOptions:
    base = dict(
        data=data,
        out=out,
        recipes=["scratch", "finetune-small"],
        fractions=[0.5, 1.0],
        seeds=2,
        epochs=2,
        split=(0.6, 0.2, 0.2),
        background=0.2,  # general-text sentences in every run's training set, not counted as labels
    )
    base.update(kw)
    return CompareOptions(**base)


@pytest.fixture(scope="module")
def out_of_domain(tmp_path_factory) -> Path:
    """An extra test set in another taxonomy: fraud / normal / advertising, other wording."""
    rows = [(t, "normal" if lab == "normal" else "fraud") for t, lab in make_messages(8, seed=11)]
    rows += [("【万科】滨江壹号二期样板间开放，首付30万起，致电400-820-1234，回T退订", "advertising")]
    return write_csv(tmp_path_factory.mktemp("ood") / "ood.csv", rows)


@pytest.fixture(scope="module")
def compared(small_data, out_of_domain, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    results = run_comparison(_options(small_data, out, test_sets=[TestSet("other", out_of_domain)]))
    files = write_report(results, out, command="tunewise compare --data small.csv")
    return out, results, files


def test_every_recipe_fraction_and_seed_runs_on_one_split(compared):
    out, results, _ = compared
    runs = results["runs"]
    assert len(runs) == 3 * 2 * 2  # (TF-IDF, scratch, finetune-small) x 2 fractions x 2 seeds
    assert {r["recipe"] for r in runs} == {"tfidf-svm", "scratch", "finetune-small"}
    assert results["split_sizes"] == {"train": 60, "dev": 20, "test": 20}
    for r in runs:
        assert 0 <= r["test_macro_f1"] <= 1 and 0 <= r["test_accuracy"] <= 1
        assert sum(map(sum, r["confusion_matrix"])) == 20  # the whole test split, every time
        assert r["train_seconds"] > 0 and r["peak_memory_mb"] > 50
        assert r["trainable_params"] <= r["total_params"]
    assert results["background"] == 0.2
    # at one fraction and seed, every recipe saw the same number of labelled messages
    for f in (0.5, 1.0):
        for s in (0, 1):
            sizes = {r["train_size"] for r in runs if r["fraction"] == f and r["seed"] == s}
            assert sizes == {30 if f == 0.5 else 60}
    # neural runs score test texts as training scored dev (over-long ones truncated)
    assert all(r["test_long_text"] == "truncate" for r in runs if r["recipe"] != "tfidf-svm")
    ft = [r for r in runs if r["recipe"] == "finetune-small"]
    assert all(r["weights_source"].endswith("tunewise-mini-zh") for r in ft)
    # the frozen head stage trains far fewer parameters than the full stage
    stages = ft[0]["stages"]
    assert stages[0]["stage"] == "head" and stages[0]["trainable_params"] < stages[1]["trainable_params"]
    scratch = [r for r in runs if r["recipe"] == "scratch"]
    assert all(len(r["history"]) == r["epochs_run"] == 2 for r in scratch)
    # weights are not kept by default; figures are
    run_dirs = list((out / "runs").iterdir())
    assert run_dirs and not list((out / "runs").rglob("*.safetensors"))
    assert json.loads((out / RESULTS_FILE).read_text(encoding="utf-8"))["runs"] == runs


def test_report_files_plots_and_tables(compared):
    out, results, files = compared
    for key in ("markdown", "html", "learning_curve", "training_curves"):
        assert files[key].is_file() and files[key].stat().st_size > 0
    assert {k for k in files if k.startswith("confusion:")} == {
        "confusion:tfidf-svm",
        "confusion:scratch",
        "confusion:finetune-small",
    }
    for path in files.values():
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = files["markdown"].read_text(encoding="utf-8")
    for aspect in (
        "initialisation",
        "frozen parameters",
        "optimizer and learning rates",
        "stages",
        "epochs",
        "augmentation",
        "training time",
        "peak memory",
    ):
        assert f"| {aspect}" in md
    assert "pretrained weights (" in md and "random weights (TextCNN)" in md
    assert "![macro-F1 vs labelled fraction](learning_curve.png)" in md
    page = files["html"].read_text(encoding="utf-8")
    # self-contained: every image inline, nothing fetched from elsewhere
    assert page.count("data:image/png;base64,") == 2 + 3 + 1  # + in vs out of domain
    assert not re.search(r'src="(?!data:)', page) and "<link" not in page
    for line in verdict(results):
        assert line.split(" (")[0] in md


def test_resume_skips_finished_runs_and_redoes_missing_ones(compared, small_data):
    out, results, _ = compared
    saved = json.loads((out / RESULTS_FILE).read_text(encoding="utf-8"))
    # as if the comparison had been killed before one of the (cheap) TF-IDF runs finished
    where = max(i for i, r in enumerate(saved["runs"]) if r["recipe"] == "tfidf-svm")
    dropped = saved["runs"].pop(where)
    (out / RESULTS_FILE).write_text(json.dumps(saved), encoding="utf-8")
    again = run_comparison(_options(small_data, out))
    assert len(again["runs"]) == 12
    assert again["runs"][:11] == saved["runs"]  # finished runs are kept as they were
    redone = again["runs"][11]
    assert redone["key"] == dropped["key"]
    assert redone["test_macro_f1"] == dropped["test_macro_f1"]  # same subset, same seed


def test_a_different_split_is_refused_not_overwritten(compared, small_data):
    out, _, _ = compared
    before = (out / RESULTS_FILE).read_text(encoding="utf-8")
    with pytest.raises(CompareError, match="different data or another split"):
        run_comparison(_options(small_data, out, split_seed=7))
    assert (out / RESULTS_FILE).read_text(encoding="utf-8") == before


def test_a_different_background_is_refused_not_mixed(compared, small_data):
    out, _, _ = compared
    with pytest.raises(CompareError, match="background"):
        run_comparison(_options(small_data, out, background=0))


def test_bad_options_are_clear_errors(small_data, tmp_path):
    with pytest.raises(CompareError, match="label fractions must be in"):
        run_comparison(_options(small_data, tmp_path / "a", fractions=[0.5, 2]))
    with pytest.raises(CompareError, match="nothing to compare"):
        run_comparison(_options(small_data, tmp_path / "b", recipes=[], baseline=False))
    with pytest.raises(CompareError, match="at least 1"):
        run_comparison(_options(small_data, tmp_path / "c", seeds=0))
    assert load_results(tmp_path / "a") is None


def test_cli_compare_with_percent_fractions(small_data, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "tunewise", "compare", "--data", str(small_data), "--out", str(out)]
        + ["--recipes", "scratch", "--fractions", "50%,100%", "--seeds", "1", "--epochs", "1"]
        + ["--split", "0.6,0.2,0.2", "--no-baseline", "--keep-models"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    results = load_results(out)
    assert results["fractions"] == [0.5, 1.0]
    assert [r["recipe"] for r in results["runs"]] == ["scratch", "scratch"]
    assert "test macro-F1" in proc.stdout
    assert (out / "report.html").is_file()
    # --keep-models: every run keeps its final weights and its resumable checkpoints
    for key in ("scratch_f0.5_s0", "scratch_f1_s0"):
        assert (out / "runs" / key / "model.safetensors").is_file()
        assert latest_checkpoint(out / "runs" / key / "checkpoints") is not None
    bad = subprocess.run(
        [sys.executable, "-m", "tunewise", "compare", "--data", str(small_data), "--out", str(out)]
        + ["--fractions", "abc"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--fractions takes numbers" in bad.stderr


def _synthetic(points: dict[str, dict[float, list[float]]], seconds: dict[str, float]) -> dict:
    runs = []
    for recipe, by_fraction in points.items():
        for f, scores in by_fraction.items():
            for seed, score in enumerate(scores):
                runs.append(
                    {
                        "recipe": recipe,
                        "fraction": f,
                        "seed": seed,
                        "test_macro_f1": score,
                        "test_accuracy": score,
                        "train_size": int(f * 1000),
                        "train_seconds": seconds[recipe],
                        "peak_memory_mb": 500.0,
                    }
                )
    recipes = {
        "scratch": load_recipe("scratch").model_dump(mode="json"),
        "finetune": load_recipe("finetune").model_dump(mode="json"),
        "tfidf-svm": None,
    }
    return {"runs": runs, "recipes": recipes, "labels": ["normal", "fraud"], "order": list(points)}


def test_verdict_fine_tuning_wins_everywhere():
    results = _synthetic(
        {
            "scratch": {0.01: [0.40, 0.44], 1.0: [0.90, 0.91]},
            "finetune": {0.01: [0.80, 0.82], 1.0: [0.96, 0.97]},
        },
        {"scratch": 10, "finetune": 50},
    )
    lines = verdict(results)
    assert lines[0] == (
        "With up to ~500 labelled messages per class, fine-tuning (finetune) beats training from "
        "scratch (scratch) by 6.0–39.0 points of test macro-F1."
    )
    assert "fine-tuning is ahead by 6.0 points" in lines[1]
    assert "scratch trains 5.0x faster than finetune" in lines[2]
    assert lines[-1] == "Recommendation: fine-tune at every label budget measured here."


def test_verdict_scratch_catches_up_and_noise_makes_ties():
    results = _synthetic(
        {
            "scratch": {0.01: [0.40, 0.44], 0.2: [0.80, 0.90], 1.0: [0.95, 0.95]},
            "finetune": {0.01: [0.80, 0.82], 0.2: [0.85, 0.87], 1.0: [0.945, 0.955]},
        },
        {"scratch": 10, "finetune": 50},
    )
    lines = verdict(results)
    # 0.2: +1.0 points but the seeds spread by 7 points: a tie, so the fine-tuning lead ends at 0.01
    assert "up to ~5 labelled messages per class" in lines[0] and "by 39.0 points" in lines[0]
    assert "within noise" in lines[1]
    assert lines[-1].startswith(
        "Recommendation: fine-tune when you have up to ~5 labelled messages per class"
    )
    assert "from ~100 per class on, scratch is as accurate and cheaper" in lines[-1]


def test_verdict_reports_the_linear_baseline_and_scratch_only_wins():
    results = _synthetic(
        {
            "tfidf-svm": {0.01: [0.9, 0.9], 1.0: [0.97, 0.97]},
            "scratch": {0.01: [0.6, 0.6], 1.0: [0.95, 0.95]},
            "finetune": {0.01: [0.5, 0.5], 1.0: [0.90, 0.90]},
        },
        {"tfidf-svm": 1, "scratch": 10, "finetune": 50},
    )
    lines = verdict(results)
    assert lines[0].startswith("Fine-tuning (finetune) does not beat training from scratch")
    assert any("ahead of the best neural recipe at 2 of 2 label budgets" in line for line in lines)
    # the reference is ahead at every budget, and costs a second: the recommendation leads with it
    assert lines[-1].startswith("Recommendation: the TF-IDF + linear SVM reference is as accurate")
    assert "1.0 s vs 10 s of training" in lines[-1]
    assert "Between the two neural regimes: on this data fine-tuning does not pay for itself" in lines[-1]


def test_the_recommendation_weighs_the_reference_where_it_is_as_good():
    """Issue 20: "fine-tune at every label budget" while TF-IDF was 2.4 points ahead at 20% and
    within noise at 100%, at a fraction of a second: the recommendation must say so."""
    results = _synthetic(
        {
            "tfidf-svm": {0.01: [0.60, 0.60], 0.2: [0.95, 0.95], 1.0: [0.975, 0.975]},
            "scratch": {0.01: [0.40, 0.42], 0.2: [0.88, 0.89], 1.0: [0.95, 0.95]},
            "finetune": {0.01: [0.80, 0.82], 0.2: [0.925, 0.927], 1.0: [0.972, 0.975]},
        },
        {"tfidf-svm": 0.4, "scratch": 10, "finetune": 50},
    )
    last = verdict(results)[-1]
    assert last.startswith("Recommendation: fine-tune at every label budget measured here.")
    assert "Except at 20%, 100% of the labels: there the TF-IDF + linear SVM reference" in last
    assert "0.4 s vs 50 s of training" in last and "prefer it there" in last


def test_report_escapes_text_from_user_files():
    results = _synthetic({"scratch": {1.0: [0.9]}, "finetune": {1.0: [0.95]}}, {"scratch": 1, "finetune": 2})
    results["labels"] = ["<script>alert(1)</script>", "b"]
    results["data"] = "<img src=x onerror=alert(1)>.csv"
    page = render_html(build_blocks(results, images={}))
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.csv" in page


def _group_ends(pgid: int, within: float) -> bool:
    """Whether every process in group ``pgid`` has ended within ``within`` seconds."""
    import os
    import time

    deadline = time.time() + within
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_killed_comparison_resumes_the_run_it_was_in(small_data, tmp_path):
    """SIGKILL the comparison's own process after the first epoch's checkpoint: the run's
    process (forked from a fork server, not from the comparison) must end with it instead of
    training on unseen, and the same command then finishes that run from its checkpoint."""
    import os
    import signal
    import time

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tunewise", "compare", "--data", str(small_data), "--out", str(out)]
    cmd += ["--recipes", "finetune-small", "--no-baseline", "--fractions", "1", "--seeds", "1"]
    cmd += ["--epochs", "5", "--split", "0.6,0.2,0.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoints = out / "runs" / "finetune-small_f1_s0" / "checkpoints"
    deadline = time.time() + 300
    while latest_checkpoint(checkpoints) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)  # the comparison only, as a CI timeout or OOM killer would
    proc.wait()
    if not _group_ends(proc.pid, within=60):  # every process it started (fork server, run) ends too
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the run's process outlived its comparison by a minute")
    assert load_results(out)["runs"] == []  # nothing finished, nothing claimed

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (run,) = load_results(out)["runs"]
    assert run["resumed_from"] and "epoch" in run["resumed_from"]
    assert "resumed from" in done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_a_runs_process_ends_when_its_comparison_ends(tmp_path):
    """A process forked from a fork server (as each run is) ends once the process that asked
    for it is killed, instead of living on unseen."""
    import contextlib
    import os
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing as mp, time\n"
        "from tunewise.compare.worker import exit_with_parent\n"
        "def child():\n"
        "    exit_with_parent()\n"
        "    print('watching', flush=True)\n"
        "    time.sleep(120)\n"
        "if __name__ == '__main__':\n"
        "    mp.get_context('forkserver').Process(target=child).start()\n"
        "    time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout.readline().strip() == "watching"
        time.sleep(0.5)
        os.killpg(parent.pid, 0)  # still there while its parent runs
        parent.kill()
        parent.wait()
        assert _group_ends(parent.pid, within=30), "the forked process outlived its parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, 9)


def test_a_changed_recipe_is_not_mixed_into_finished_runs(compared, small_data):
    out, _, _ = compared
    with pytest.raises(CompareError, match="recipe 'scratch' differs from the one its 4 finished runs"):
        run_comparison(_options(small_data, out, epochs=3))


def test_an_unfinished_run_with_other_settings_is_moved_aside_not_resumed(small_data, tmp_path):
    """A run directory holding an unfinished run of a different recipe (e.g. left by an earlier
    comparison into the same --out) cannot be continued: the run starts afresh and the old
    directory is kept beside it, checkpoints and all."""
    from tunewise.training.run import TrainOptions, train_model

    out = tmp_path / "cmp"
    stale = out / "runs" / "scratch_f1_s0"
    train_model(
        TrainOptions(
            data=small_data,
            recipe=load_recipe("scratch").with_epochs(1),  # the comparison below runs 2 epochs
            out=stale,
            seed=0,
            split=(0.6, 0.2, 0.2),
            show_progress=False,
            log_with=None,
        ),
    )
    assert latest_checkpoint(stale / "checkpoints") is not None

    options = _options(small_data, out, recipes=["scratch"], fractions=[1.0], seeds=1, baseline=False)
    (run,) = run_comparison(options)["runs"]
    moved = Path(run["set_aside"])
    assert moved == stale.with_name("scratch_f1_s0.stale-1")
    assert latest_checkpoint(moved / "checkpoints") is not None  # nothing of it was lost
    assert run["resumed_from"] is None and run["epochs_run"] == 2


def test_every_run_is_scored_out_of_domain_and_the_report_says_so(compared, out_of_domain):
    out, results, files = compared
    assert results["test_sets"] == {"other": str(out_of_domain)}
    for run in results["runs"]:
        other = run["ood"]["other"]
        assert other["n"] == 25 and other["fraud"] == 16 and other["not_fraud"] == 9
        assert 0 <= other["roc_auc"] <= 1 and other["headline"] == other["roc_auc"]
        assert set(other["per_label"]) == {"normal", "fraud", "advertising"}
        assert "macro_f1" not in other  # its labels are not the model's own
    markdown = files["markdown"].read_text(encoding="utf-8")
    assert "Out of domain: the extra test sets" in markdown and "other: ROC-AUC" in markdown
    assert "share flagged at 100%" in markdown
    assert "| peak MiB | other: ROC-AUC |" in markdown  # a column in the every-run table
    assert files["in_vs_out"].is_file()
    assert any(line.startswith("Out of domain (other, ROC-AUC") for line in verdict(results))
    assert results["shortcut_audit"]["n"] == results["split_sizes"]["train"]
    assert "## Shortcut audit" in markdown and "surface-only F1" in markdown


def test_a_tuned_comparison_records_what_each_run_chose_and_the_gap_intervals(small_data, tmp_path):
    """--tune: every arm gets the same search on a slice of its own labels; the report lists
    what was chosen per run and an interval for every gap; a tuned directory refuses untuned runs."""
    from tunewise.tuning import TuneSpec

    out = tmp_path / "tuned"
    spec = TuneSpec(grid=(0.5, 2.0), min_steps=4, max_epochs_factor=1)
    # one neural arm is enough: every neural recipe goes through the same search
    opts = _options(small_data, out, recipes=["scratch"], fractions=[1.0], background=0.0, tune=spec)
    results = run_comparison(opts)
    assert results["tune"]["grid"] == [0.5, 2.0] and len(results["test_keys"]) == 20
    for run in results["runs"]:
        assert run["train_size"] == 60  # the labels the run had: 48 trained, 12 chose
        assert len(run["test_predictions"]) == 20 and -1 not in run["test_predictions"]
        tuning = run["tuning"]
        assert tuning["fit_size"] == 48
        if run["recipe"] == "tfidf-svm":
            assert tuning["chosen"]["C"] in (0.1, 1.0, 10.0) and tuning["validation_size"] == 12
        else:
            assert [t["multiplier"] for t in tuning["trials"]] == [0.5, 2.0]
            chosen = tuning["chosen"]
            assert chosen["validation_score"] == max(t["validation_score"] for t in tuning["trials"])
            assert chosen["best_epoch"] == run["best_epoch"] and chosen["epochs_budget"] == 2
            # the dev split chose nothing, so it is one more held-out score
            assert 0 <= run["dev_macro_f1"] <= 1 and "validation_macro_f1" in tuning
    # predictions agree with the stored figure: the pairs really are the test split's messages
    from sklearn.metrics import f1_score

    for run in results["runs"]:
        f1 = f1_score(results["test_labels"], run["test_predictions"], average="macro", labels=[0, 1])
        assert f1 == pytest.approx(run["test_macro_f1"])
    files = write_report(results, out)
    md = files["markdown"].read_text(encoding="utf-8")
    assert "## Gaps and their confidence intervals" in md
    assert re.search(r"\| tfidf-svm − scratch \| — \| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", md)
    assert "tuned (validation score per candidate, * chosen)" in md and "budget 2" in md
    assert "choose the learning rate, the epoch and when to stop" in md
    with pytest.raises(CompareError, match="tuned"):
        run_comparison(_options(small_data, out, recipes=["scratch"], fractions=[1.0], background=0.0))


def test_a_gap_takes_its_side_from_the_interval_and_the_best_from_common_seeds():
    from tunewise.compare.stats import GapCI
    from tunewise.compare.summary import Gap, best_per_budget

    # a positive point estimate with an interval below zero: the interval decides
    assert Gap(0.1, 10, 0.0, 0.0, GapCI(0.3, -1.0, -0.2, 3, 900)).outcome == "scratch"
    assert Gap(0.1, 10, 0.0, 0.0, GapCI(0.3, -1.0, 1.2, 3, 900)).outcome == "tie"
    assert Gap(0.1, 10, 0.0, 0.0, GapCI(0.3, 0.1, 1.2, 3, 900)).outcome == "finetune"

    # a comparison still running: finetune has a third, lucky seed that scratch has not run yet.
    # Over all its seeds finetune's mean is higher (0.930 vs 0.920); on the seeds both ran, lower.
    results = _synthetic(
        {"scratch": {0.1: [0.92, 0.92]}, "finetune": {0.1: [0.90, 0.90, 0.99]}},
        {"scratch": 10, "finetune": 50},
    )
    [(fraction, best, tied, gaps_here)] = best_per_budget(results)
    assert best == "scratch" and set(gaps_here) == {"finetune"}
