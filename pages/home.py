"""Home: what the studio does, and the classic experiment in one click, with its recent results."""

import time

import pandas as pd
import streamlit as st

from tlcore.config import RunSpec
from tlcore.data.uploads import source_label
from tlcore.errors import TLError
from tlcore.records import RunRecord, RunStatus
from tlcore.report.paired import ALPHA
from tlcore.report.summaries import accuracy_gain, backbone_label, headline_accuracy, run_label, run_name
from tlcore.runs import jobs
from tlcore.runs.checks import spec_problems, spec_warnings
from tlcore.runs.experiments import ClassicBatch, classic_batch, classic_experiment, recent_classics
from tlcore.training.estimate import estimate_run_seconds, format_seconds
from ui import auth, glue, widgets

glue.require_frame(__file__)

BATCH = "home.batch"  # the classic experiment shown under Results: its ClassicBatch.id


def estimates(runs: list[RunSpec]) -> tuple[list[float], str]:
    """Each classic run's estimated training time on this server, and what they assume."""
    images = glue.train_images(runs[0].dataset)
    server = glue.server_profile()
    seconds = [estimate_run_seconds(run, images or glue.ASSUMED_TRAIN_IMAGES, server) for run in runs]
    basis = f"on {server.label}, for {images or glue.ASSUMED_TRAIN_IMAGES:,} training images"
    if images is None:
        basis += " (assumed: the dataset cannot be listed)"
    return seconds, basis


def batch_label(batch: ClassicBatch, current: RunSpec) -> str:
    """One line per classic experiment in the picker: when, on what, with which backbone."""
    spec = batch.specs[0]
    when = time.strftime("%d %b %H:%M", time.localtime(batch.last_created))
    mine = " (the current settings)" if batch.id == classic_experiment(current)[0].key() else ""
    return (f"{when} · {source_label(spec.dataset.source)} · {backbone_label(spec)} · "
            f"{spec.dataset.image_size} px · {spec.train.total_epochs} epochs{mine}")


def happening(batch: ClassicBatch) -> str:
    """What the classic runs are doing, in words, while some are queued or running."""
    states = []
    for spec, run in zip(batch.specs, batch.runs, strict=True):
        state = "not queued" if run is None else str(run.status)
        if run is not None and run.status == RunStatus.RUNNING:
            state += f" ({run.progress:.0%})"
        states.append(f"{spec.train.strategy} {state}")
    return ("The classic experiment is queued and training: " + ", ".join(states) + ". The runs train "
            "one after another, the pretrained ones first; scratch, the slow baseline, comes last. "
            "This section and the sidebar follow them.")


def results(batch: ClassicBatch) -> None:
    """How the finished runs of a batch compare: curves, test accuracy, gains over scratch."""
    finished = [run for run in batch.stored if run.status == RunStatus.FINISHED]
    if not finished:
        return
    st.markdown("**Results**")
    curves, scores = st.columns([3, 2])
    labels = {run.id: run_name(run, short=True) for run in finished}
    curves.plotly_chart(glue.comparison_chart(finished, labels, "val_accuracy"), key="home.curves")
    baseline = next((run for run in finished if run.spec.train.strategy == "scratch"), None)
    for run in finished:
        accuracy = headline_accuracy(run)
        gain = None
        if baseline is not None and run is not baseline:
            gain = accuracy_gain(accuracy, headline_accuracy(baseline), "scratch")
        scores.metric(f"{labels[run.id]}: test accuracy", f"{accuracy:.1%}", delta=gain,
                      help="Accuracy on the held-out test split")
    verdicts(finished)
    st.page_link(widgets.COMPARE_PAGE, icon=":material/compare:",
                 label="Compare them in detail: confusion matrices, mistakes, your own images",
                 query_params={glue.COMPARE_PARAM: ",".join(run.id for run in batch.stored)})


# Is fine-tuning better than frozen, is each better than scratch, and is auto better than the
# other pretrained runs: A, then B, by strategy. (A comment, not a docstring: Streamlit's magic
# would print a bare string at the top of a page.)
VERDICT_PAIRS = (
    ("frozen", "frozen_then_finetune"), ("scratch", "frozen"), ("scratch", "frozen_then_finetune"),
    ("frozen", "auto"), ("frozen_then_finetune", "auto"), ("scratch", "auto"),
)


def verdicts(finished: list[RunRecord]) -> None:
    """The paired verdict (McNemar's test on the same test images) for each pair that finished,
    as a table row each: a sentence per pair, with both run names in it, read as a wall of text."""
    by_strategy = {run.spec.train.strategy: run for run in finished}
    rows, images = [], 0
    for first, second in VERDICT_PAIRS:
        if first in by_strategy and second in by_strategy:
            try:
                paired = glue.paired_comparison(by_strategy[first], by_strategy[second])
            except TLError:
                continue  # not pairable (runs from before per-image answers were kept)
            images = paired.images
            winner = second if paired.only_b_correct > paired.only_a_correct else first
            rows.append({"comparison": f"{second} vs {first}", "fixed": paired.only_b_correct,
                         "broke": paired.only_a_correct, "p (McNemar)": f"{paired.mcnemar_p:.2g}",
                         "verdict": f"clear: {winner} is better" if paired.clear else "not clear"})
    if not rows:
        return
    st.markdown("**Is the difference real?**")
    st.caption(f"Paired on the same {images:,} test images. In *B vs A*, *fixed* counts the images "
               f"B gets right and A wrong, *broke* the reverse; a difference is clear when p < {ALPHA:g}.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="home.verdicts")


def classic_results(specs: tuple[RunSpec, ...], live: bool) -> None:
    """Where one classic experiment stands, read from the store by spec key on every poll.

    So the answer to "does pretraining help?" is still here after a reload, in a new session,
    after other experiments were saved, or when the runs were queued from the command line.
    """
    batch = classic_batch(specs[0], glue.store())
    active = any(run.is_active for run in batch.stored)
    if active:
        st.success(happening(batch), icon=":material/model_training:")
    for run in batch.stored:
        st.page_link(widgets.TRAIN_PAGE, label=f"{glue.literal(run_label(run))} — {run.status}",
                     icon=":material/monitoring:", query_params={glue.RUN_PARAM: run.id})
    results(batch)
    if live and not active:
        st.rerun()  # the last run ended: stop polling and draw the final state once


def launch(runs: list[RunSpec]) -> None:
    """Queue the runs (pretrained first) and show them under Results."""
    with glue.friendly("queuing the classic experiment"):
        store = glue.store()
        submissions = [jobs.submit(r, store, owner=auth.current_user().name) for r in runs]
        glue.watch(submissions[0].run.id, in_url=False)
        st.session_state[BATCH] = runs[0].key()
        st.rerun()  # so the sidebar lists the new jobs and starts following them


st.title("Transfer-Learning Studio")
st.markdown(
    "Train an image classifier on **your images** by building on a network pretrained on ImageNet.  \n"
    "Pick a dataset and a backbone, train it **frozen, fine-tuned or from scratch**, and watch the "
    "curves live.  \n"
    "Compare runs side by side, inspect their mistakes, and classify new images with any of them."
)
cols = st.columns(3)
cols[0].page_link(widgets.CONFIGURE_PAGE, label="1 · Configure an experiment", icon=":material/tune:")
cols[1].page_link(widgets.TRAIN_PAGE, label="2 · Train and watch", icon=":material/monitoring:")
cols[2].page_link(widgets.COMPARE_PAGE, label="3 · Compare & classify", icon=":material/compare:")

st.divider()
st.subheader("The classic experiment")
spec = glue.current_spec()
experiment = glue.current_experiment()
if experiment is None:
    st.info(glue.starter().note, icon=":material/lightbulb:")
st.markdown(
    "Does pretraining help? Train the same classifier three ways — on a **frozen** pretrained "
    "backbone, **frozen, then fine-tuned**, and **from scratch** — with the same data, backbone and "
    f"epoch budget, taken from *{experiment or 'the default settings'}*."
)
with_auto = st.toggle("Add a fourth run with the auto strategy", key="home.with_auto",
                      help="A head search on cached features, then the top blocks fine-tuned with "
                           "discriminative rates and a cosine schedule, stopping early.")
runs = classic_experiment(spec, with_auto=with_auto)
seconds, basis = estimates(runs)
st.dataframe(
    pd.DataFrame([
        {"run": r.name, "weights": r.backbone.weights, "epochs": r.train.epochs,
         "fine-tune epochs": r.train.fine_tune_epochs, "estimated time": format_seconds(s)}
        for r, s in zip(runs, seconds, strict=True)
    ]),
    hide_index=True, width="content",
)
count = "four" if with_auto else "three"
auto_last = " (auto, with its head search, comes last)" if with_auto else ""
st.caption(f"All {count}: about **{format_seconds(sum(seconds))}** of training {basis}. The frozen and "
           f"fine-tuned runs come first, so the first result is due after about "
           f"{format_seconds(seconds[0])}{auto_last}.  \n"
           f"Dataset **{source_label(spec.dataset.source)}** at {spec.dataset.image_size} px · backbone "
           f"`{backbone_label(spec)}`")
problems = [p for r in runs for p in spec_problems(r)]
for problem in problems[:1]:
    glue.show_error(problem)
for warning in {w for r in runs for w in spec_warnings(r)}:
    st.warning(warning, icon=":material/warning:")

current = glue.attempt(classic_batch, spec, glue.store(), doing="looking up the classic runs")
already = current.stored if current else []
settled = len(already) == len(runs) and all(run.status == RunStatus.FINISHED or run.is_active
                                            for run in already)
if st.button("Run the classic experiment", type="primary", key="home.classic",
             icon=":material/play_arrow:", disabled=bool(problems) or settled,
             help="These settings' runs are queued, training or done: see below." if settled else None):
    launch(runs)
if settled and any(run.is_active for run in already):
    st.caption("It is under way with these settings: follow it below and in the sidebar.")
elif settled:
    st.caption("It has run with these settings: the results are below. Change the settings on the "
               "Configure page to run it again.")

batches = glue.attempt(recent_classics, glue.store(), doing="listing the classic experiments") or []
if batches:
    st.subheader("Results of classic experiments")
    by_id = {batch.id: batch for batch in batches}
    mine = runs[0].key()
    if st.session_state.get(BATCH) not in by_id:
        st.session_state[BATCH] = mine if mine in by_id else next(iter(by_id))
    chosen = by_id[st.selectbox("Classic experiment", list(by_id), key=BATCH,
                                format_func=lambda key: batch_label(by_id[key], spec))]
    following = any(run.is_active for run in chosen.stored)
    st.fragment(run_every=glue.POLL_ACTIVE_S if following else None)(classic_results)(chosen.specs, following)
