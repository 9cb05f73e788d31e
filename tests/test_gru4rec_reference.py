"""The fast GRU4Rec trainer against its readable autograd twin (``tests/reference_gru4rec.py``).

Both start from the same parameters and see the same negative samples and dropout masks; after
every step of a whole epoch (full batches, duplicates, session resets and the shrinking tail)
their parameters must agree. Dropout, logQ and momentum are non-zero wherever they apply.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference_gru4rec as reference  # tests/reference_gru4rec.py, the autograd twin
import torch

from algorithms.gru4rec.batching import plan_epoch
from algorithms.gru4rec.epochs import train_epoch
from algorithms.gru4rec.model import init_params
from algorithms.gru4rec.trainer import TrainConfig, Trainer
from datasets.sessions import Sessions, from_lists

CPU = torch.device("cpu")


def _sessions() -> Sessions:
    """14 sessions over 9 items: repeats inside sessions, popular and rare items, lengths 2-6."""
    rng = np.random.default_rng(3)
    sessions = [
        list(rng.choice(9, size=n, p=np.arange(9, 0, -1) / 45.0))
        for n in (2, 5, 3, 2, 6, 4, 2, 3, 5, 2, 4, 3, 6, 2)
    ]
    return from_lists(sessions, n_items=9)


CASES = {
    # name: (embedding, layers, loss, final_act, n_sample, logq, momentum, dropout_embed, dropout_hidden)
    "xe-shared-logq": ("shared", [6], "cross-entropy", "softmax", 5, 1.0, 0.3, 0.2, 0.3),
    "xe-shared-2layers": ("shared", [6, 5], "cross-entropy", "softmax", 4, 0.7, 0.2, 0.1, 0.4),
    "bprmax-embedding": (4, [5], "bpr-max", "elu-0.5", 5, 0.0, 0.3, 0.2, 0.3),
    "top1max-onehot-2layers": (0, [5, 4], "top1-max", "elu-1", 5, 0.0, 0.3, 0.2, 0.3),
    "bpr-shared": ("shared", [5], "bpr", "linear", 5, 0.0, 0.3, 0.2, 0.3),
    "top1-onehot-insamples-only": (0, [5], "top1", "tanh", 0, 0.0, 0.3, 0.2, 0.3),
    "xe-no-momentum": ("shared", [6], "cross-entropy", "softmax", 5, 1.0, 0.0, 0.2, 0.3),
}


def _pair(case: str, layout: str, batch_size: int = 3, cell: str = "reset-after"):
    embedding, layers, loss, act, n_sample, logq, mom, p_emb, p_hid = CASES[case]
    train = _sessions()
    counts = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
    config = TrainConfig(
        loss=loss,
        final_act=act,
        n_sample=n_sample,
        sample_alpha=0.5,
        sample_cache_size=1000,
        logq=logq,
        bpreg=0.7,
        learning_rate=0.2,
        momentum=mom,
        dropout_embed=p_emb,
        dropout_hidden=p_hid,
    )
    gen = torch.Generator().manual_seed(7)
    params = init_params(train.n_items, layers, embedding, gen, CPU, cell=cell)
    assert ("layer0.bh" in params) == (cell == "reset-after")
    plan = plan_epoch(train, batch_size)
    fast = Trainer(
        {k: v.clone() for k, v in params.items()},
        embedding,
        config,
        counts,
        plan,
        CPU,
        gen,
        layout=layout,
    )
    ref = reference.ReferenceGRU4Rec(
        params,
        torch.tensor(counts),
        reference.StepConfig(
            loss=loss,
            final_act=act,
            embedding=embedding,
            batch_size=batch_size,
            learning_rate=0.2,
            momentum=mom,
            logq=logq,
            sample_alpha=0.5,
            bpreg=0.7,
        ),
    )
    return fast, ref, plan


def _record_draws(fast: Trainer) -> dict[str, list]:
    """Make the fast trainer report the samples and dropout masks it draws."""
    drawn: dict[str, list] = {"masks": [], "sample": []}
    draw_mask = fast._dropout_mask
    fast._dropout_mask = lambda n, width, p: (
        drawn["masks"].append(draw_mask(n, width, p).clone()) or drawn["masks"][-1]
    )
    if fast.samples is not None:
        next_sample = fast.samples.next
        fast.samples.next = lambda: drawn["sample"].append(next_sample()) or drawn["sample"][-1]
    return drawn


def _reference_step(ref, fast: Trainer, plan, t: int, drawn: dict[str, list]) -> float | None:
    n = int(plan.n_active[t])
    masks = drawn["masks"]
    embed_mask = masks.pop(0) if fast.input_dropout > 0 else None
    layer_masks = [masks.pop(0) if p > 0 else None for p in fast.layer_dropout]
    assert not masks
    sample = drawn["sample"].pop()[0] if drawn["sample"] else None
    keep = None if plan.keep[t] is None else torch.as_tensor(plan.keep[t])
    return ref.step(
        torch.as_tensor(plan.inputs[t, :n]),
        torch.as_tensor(plan.targets[t, :n]),
        torch.as_tensor(plan.reset[t, :n]),
        sample,
        None if embed_mask is None else embed_mask.double(),
        [None if m is None else m.double() for m in layer_masks],
        keep,
    )


@pytest.mark.parametrize("cell", ["reset-after", "reset-before"])
@pytest.mark.parametrize("layout", ["unique", "static"])
@pytest.mark.parametrize("case", list(CASES))
def test_fast_trainer_matches_the_reference_step_by_step(case: str, layout: str, cell: str) -> None:
    fast, ref, plan = _pair(case, layout, cell=cell)
    drawn = _record_draws(fast)
    fast.reset_hidden()
    assert plan.n_active[-1] < plan.n_active[0]  # the shrinking tail is part of the epoch
    for t in range(plan.n_steps):
        fast.train_step(t)
        trained = _reference_step(ref, fast, plan, t, drawn) is not None
        for name, value in fast.export_params().items():
            torch.testing.assert_close(
                value.double(),
                ref.p[name],
                atol=2e-5,
                rtol=1e-4,
                msg=lambda m, t=t, name=name: f"step {t}, {name}: {m}",
            )
        for h_fast, h_ref in zip(fast.hidden, ref.hidden):  # the dropped-out states
            if trained:  # (after the official loop's stop the reference keeps its states)
                torch.testing.assert_close(h_fast.double(), h_ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("case", ["xe-shared-logq", "top1max-onehot-2layers"])
def test_both_row_layouts_train_the_same_epoch(case: str) -> None:
    """Everything the GPU runs but device synchronisation: the "static" layout on the CPU."""
    results = []
    for layout in ("unique", "static"):
        fast, _, _ = _pair(case, layout, batch_size=4)
        train_epoch(fast, 1, progress=False)
        results.append(fast.export_params())
    for name in results[0]:
        torch.testing.assert_close(results[1][name], results[0][name], atol=1e-6, rtol=1e-5)


def test_initialisation_bounds_are_per_gate_block() -> None:
    # 100 units and a shared embedding: each (100, 100) block gets sqrt(6 / 200) = 0.1732,
    # where one bound over the stacked (100, 300) matrix would be sqrt(6 / 400) = 0.1225.
    gen = torch.Generator().manual_seed(0)
    fast = init_params(500, [100], "shared", gen, CPU)
    ref = reference.init_params(500, [100], "shared", gen)
    expected = {
        "layer0.wx": 0.17321,
        "layer0.w_rz": 0.17321,
        "layer0.w_c": 0.17321,
        "output.weight": np.sqrt(6 / 600),
    }
    for name, bound in expected.items():
        for params in (fast, ref):
            for block in params[name].split(100, dim=1):
                top = float(block.abs().max())
                assert bound * 0.98 < top <= bound + 1e-6, (name, top, bound)
    assert float(fast["layer0.bx"].abs().max()) == 0.0
