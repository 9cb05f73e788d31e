"""One training harness for the neural successors of GRU4Rec (NARM, STAMP, SR-GNN, SASRec).

Training examples of the prefix models are the prefixes of every training session,
``s[:k] -> s[k]`` for k = 1..len-1, kept as two integer arrays (where the prefix starts in the
flat item array, and its length); a batch is gathered from them vectorised and right-padded to
its own longest prefix. Item ``i`` of the framework is row ``i + 1`` of every item table: row 0 is
the pad, never ranked (scores are ``vector @ E[1:].T``, exactly ``n_items`` columns).

A model subclass of :class:`NeuralRecommender` supplies its network (``session_vectors(items,
lengths)`` and ``item_table()``), its optimiser, schedule, clipping and loss reduction, and, if it
batches differently, its own batch plan (STAMP's equal-length batches, SASRec's sequences). The
harness does the rest, once for all: devices (:func:`algorithms.base.resolve_device`), seeds
(``torch.Generator`` only, never global seeding; dropout draws from the model's generator),
epochs with a progress bar, ``on_epoch`` (:func:`algorithms.base.epoch_values`), selection of the
best epoch on ``valid`` with patience, a checkpoint after every epoch in ``resume_file`` and
continuing from it, and the batched ``step`` over slots whose state is each slot's prefix.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from algorithms.base import (
    EpochCallback,
    SessionRecommender,
    cpu_training,
    epoch_values,
    resolve_device,
)
from algorithms.gru4rec.threads import ThreadPolicy
from algorithms.params import Choice, Int, Optional, Pattern
from datasets.io import atomic_write
from datasets.progress import bars_enabled
from datasets.sessions import UNKNOWN, Sessions

log = logging.getLogger(__name__)

TRAINING_FORMAT = "neural-training/1"
MODEL_FORMAT = "neural/1"
CUTOFF = 20
EVAL_BATCH = 1024

COMMON_SPECS = {
    "n_epochs": Int(low=1),
    "batch_size": Int(low=1),
    "patience": Optional(Int(low=1)),
    "select_on": Choice(("mrr", "recall")),
    "max_len": Optional(Int(low=1)),
    "truncate": Choice(("first", "last")),
    "device": Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu, cuda or cuda:N"),
    "seed": Int(low=0),
    "n_threads": Optional(Int(low=1)),
}


# --------------------------------------------------------------------------- data
def prefix_examples(sessions: Sessions) -> tuple[np.ndarray, np.ndarray]:
    """Every prefix example of ``sessions``: (start, length) of the prefix in ``sessions.items``;
    the target is ``items[start + length]``. Ordered by session, then by prefix length."""
    lengths = sessions.lengths
    n_ex = np.maximum(lengths - 1, 0)
    starts = np.repeat(sessions.offsets[:-1], n_ex)
    first = np.cumsum(n_ex) - n_ex
    k = np.arange(int(n_ex.sum()), dtype=np.int64) - np.repeat(first, n_ex) + 1
    return starts.astype(np.int64), k


def truncate_window(
    starts: torch.Tensor, lengths: torch.Tensor, max_len: int | None, mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, length) after truncation to ``max_len``: the FIRST ``max_len`` clicks (``mode``
    ``"first"``, NARM's data_process.py) or the last ones (``"last"``)."""
    if max_len is None:
        return starts, lengths
    kept = lengths.clamp(max=max_len)
    if mode == "last":
        starts = starts + lengths - kept
    return starts, kept


def gather_padded(
    flat: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) rows ``flat[start : start + length]`` (0 beyond each length; T the
    batch's own longest length, at least 1) and the (B, T) bool mask of real positions."""
    width = max(int(lengths.max()) if len(lengths) else 1, 1)
    ar = torch.arange(width, device=flat.device)
    mask = ar[None, :] < lengths[:, None]
    pos = (starts[:, None] + ar[None, :]).clamp(max=max(len(flat) - 1, 0))
    return torch.where(mask, flat[pos], torch.zeros((), dtype=flat.dtype, device=flat.device)), mask


def dropout(x: torch.Tensor, p: float, training: bool, gen: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout drawing from ``gen`` (never torch's global generator)."""
    if not training or p <= 0:
        return x
    keep = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) >= p
    return x * keep / (1.0 - p)


class Network(nn.Module):
    """What a model's network provides to the harness. ``gen`` (set by the harness) is the
    generator dropout draws from."""

    gen: torch.Generator | None = None

    def item_table(self) -> torch.Tensor:  # pragma: no cover - overridden
        """(n_items + 1, d): the output item vectors, row 0 the pad."""
        raise NotImplementedError

    def session_vectors(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, d) session vectors of right-padded prefixes (items shifted by one, 0 = pad)."""
        raise NotImplementedError  # pragma: no cover

    # A network may also define ``start_state(n, capacity)``, ``advance(state, rows, at, items)``
    # and ``state_vectors(state, rows, lengths)``: the same session vectors as
    # ``session_vectors``, kept up to date one click at a time (NARM: the GRU state and the
    # attention keys of every position), for evaluation without recomputing each prefix.

    def scores(self, vectors: torch.Tensor, into: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_items) scores: the vectors against every item row but the pad; written into
        ``into`` (float32) when given, by the same matrix product."""
        table = self.item_table()[1:]
        if into is None or vectors.dtype != into.dtype or table.dtype != into.dtype:
            scores = vectors @ table.T
            return scores if into is None else into.copy_(scores)
        return torch.mm(vectors, table.T, out=into)


# --------------------------------------------------------------------------- the harness
class NeuralRecommender(SessionRecommender):
    """Base class of the neural prefix models: the training loop, checkpoints and ``step``.

    Subclasses implement :meth:`_network`, and may override :meth:`_optimizer`,
    :meth:`_lr_factor`, :meth:`_after_backward` (clipping), :meth:`_plan` (batch order),
    :meth:`_batch_loss` and :attr:`loss_reduction`.

    Attributes set by ``fit``:
        network_: the trained network (on ``device_``), in eval mode.
        n_items_: number of items scored.
        device_: the torch device used.
        history_: one dict per epoch: ``epoch``, ``loss`` (mean per training event), ``events``,
            ``events_per_s``, ``lr``, ``threads`` (CPU training threads; None on a GPU), with
            ``valid_recall20`` / ``valid_mrr20`` when ``valid`` was given, and what the
            caller's ``on_epoch`` returned.
        best_epoch_: the epoch whose weights the model holds (the best on ``valid`` by
            ``select_on`` when it was given, else the last).
    """

    loss_reduction = "mean"
    keeps_best_epoch = False
    """True where the authors' code keeps the epoch that is best on held-out data even without a
    patience (NARM, SR-GNN); then the runner picks the epoch count on the validation split."""

    @property
    def selects_epochs(self) -> bool:
        return self.keeps_best_epoch or self.patience is not None

    def chosen_epochs(self) -> int:
        return self.best_epoch_

    # ------------------------------------------------------------------ hooks
    def _network(self, n_items: int, gen: torch.Generator) -> Network:  # pragma: no cover
        raise NotImplementedError

    def _optimizer(self, net: Network) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            net.parameters(), lr=self.learning_rate, weight_decay=getattr(self, "weight_decay", 0)
        )

    def _lr_factor(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (from 1) relative to ``learning_rate``."""
        return 1.0

    def _after_backward(self, net: Network) -> None:
        """Gradient clipping, where a model has one."""

    def _prepare(self, train: Sessions) -> dict[str, torch.Tensor]:
        """The training data on the device: the flat items (shifted by one) and the prefix
        examples."""
        flat = torch.as_tensor(train.items + 1, device=self.device_)
        starts, lengths = prefix_examples(train)
        return {  # an UNKNOWN (-1) target is ignored by the loss (index -1)
            "flat": flat,
            "starts": torch.as_tensor(starts, device=self.device_),
            "lengths": torch.as_tensor(lengths, device=self.device_),
            "n_examples": len(starts),
        }

    def _plan(self, data: dict[str, Any], gen: torch.Generator) -> list[torch.Tensor]:
        """This epoch's batches of example indices: a random permutation in chunks."""
        perm = torch.randperm(data["n_examples"], generator=gen)
        return list(torch.split(perm, self.batch_size))

    def _batch_events(self, data: dict[str, Any], batch: torch.Tensor) -> int:
        """The training events (targets) in one batch of the plan."""
        return int(batch.numel())

    def _batch_loss(
        self, net: Network, data: dict[str, Any], batch: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """(loss to minimise, number of training events in it) for one batch of examples."""
        batch = batch.to(self.device_)
        starts, lengths = data["starts"][batch], data["lengths"][batch]
        targets = data["flat"][starts + lengths] - 1
        starts, lengths = truncate_window(starts, lengths, self.max_len, self.truncate)
        items, mask = gather_padded(data["flat"], starts, lengths)
        logits = net.scores(net.session_vectors(items, mask))
        loss = nn.functional.cross_entropy(
            logits, targets, reduction=self.loss_reduction, ignore_index=UNKNOWN
        )
        return loss, len(batch)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ) -> NeuralRecommender:
        """Train for ``n_epochs`` (stopping early after ``patience`` epochs without a better
        ``valid`` score when ``valid`` is given, and keeping the best epoch's weights), calling
        ``on_epoch`` after every epoch and checkpointing into ``resume_file``."""
        self.validate()
        self.device_ = resolve_device(self.device)
        self.n_items_ = train.n_items
        self.history_: list[dict[str, Any]] = []
        self.best_epoch_ = 0
        init_seed, run_seed = np.random.SeedSequence(self.seed).generate_state(2)
        init_gen = torch.Generator().manual_seed(int(init_seed))
        net = self._network(train.n_items, init_gen).to(self.device_)
        plan_gen = torch.Generator().manual_seed(int(run_seed))
        net.gen = torch.Generator(device=self.device_).manual_seed(int(run_seed) + 1)
        self.network_ = net
        opt = self._optimizer(net)
        data = self._prepare(train)
        progress = {"best": -math.inf, "best_state": None, "bad": 0}
        key = self._training_key(train, valid) if resume_file is not None else None
        done = 0
        if key is not None:
            done = self._resume(Path(resume_file), key, net, opt, plan_gen, progress)
        with self._threads():
            for epoch in range(done + 1, self.n_epochs + 1):
                if (
                    valid is not None
                    and self.patience is not None
                    and progress["bad"] >= (self.patience)
                ):
                    break
                row = self._train_epoch(net, opt, data, plan_gen, epoch)
                net.eval()
                if valid is not None:
                    row.update(self.validation_scores(valid))
                    value = row[f"valid_{self.select_on}{CUTOFF}"]
                    if value > progress["best"]:
                        progress.update(best=value, bad=0, best_state=_cpu_state(net))
                        self.best_epoch_ = epoch
                    else:
                        progress["bad"] += 1
                else:
                    self.best_epoch_ = epoch
                row.update(epoch_values(on_epoch, self, epoch))
                self.history_.append(row)
                log.info(
                    "%s epoch %d: loss %.4f, %.0f events/s%s",
                    self.name,
                    epoch,
                    row["loss"],
                    row["events_per_s"],
                    "".join(f", {k} {v:.4f}" for k, v in row.items() if k.startswith("valid")),
                )
                if key is not None:
                    self._save_training(Path(resume_file), key, epoch, net, opt, plan_gen, progress)
        if valid is not None and progress["best_state"] is not None:
            net.load_state_dict(progress["best_state"])
            if self.history_ and self.best_epoch_ != self.history_[-1]["epoch"]:
                log.info("%s: keeping epoch %d, the best on valid", self.name, self.best_epoch_)
        net.eval()
        return self

    def _train_epoch(
        self,
        net: Network,
        opt: torch.optim.Optimizer,
        data: dict[str, Any],
        plan_gen: torch.Generator,
        epoch: int,
    ) -> dict[str, Any]:
        lr = self.learning_rate * self._lr_factor(epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        net.train()
        policy = getattr(self, "_policy", None)
        caller_threads = torch.get_num_threads()
        if policy is not None:
            policy.begin_epoch()
        batches = self._plan(data, plan_gen)
        total = sum(self._batch_events(data, b) for b in batches)
        bar = tqdm(
            total=total,
            desc=f"{self.name} epoch {epoch}",
            unit="ev",
            unit_scale=True,
            disable=not bars_enabled(),
            leave=False,
            mininterval=1.0,
        )
        loss_sum = torch.zeros((), device=self.device_, dtype=torch.float64)
        events = 0
        start = time.perf_counter()
        for i, batch in enumerate(batches):
            loss, n = self._batch_loss(net, data, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            self._after_backward(net)
            opt.step()
            if policy is not None:
                policy.step_done()
            per_event = loss.detach() * (n if self.loss_reduction == "mean" else 1)
            loss_sum += per_event.double()
            events += n
            bar.update(n)
            if bar.disable is False and (i % 20 == 0 or i + 1 == len(batches)):
                elapsed = max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(
                    loss=f"{float(loss_sum) / max(events, 1):.4f}", ev_s=f"{events / elapsed:.0f}"
                )
        if self.device_.type == "cuda":
            torch.cuda.synchronize(self.device_)
        seconds = time.perf_counter() - start
        bar.close()
        if torch.get_num_threads() != caller_threads:  # validation runs with the caller's
            torch.set_num_threads(caller_threads)
        mean_loss = float(loss_sum) / max(events, 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"{self.name} training diverged in epoch {epoch}: loss {mean_loss}; "
                f"try a lower learning_rate (now {self.learning_rate})"
            )
        return {
            "epoch": epoch,
            "loss": mean_loss,
            "events": events,
            "events_per_s": events / max(seconds, 1e-9),
            "lr": lr,
            "threads": None if policy is None else policy.current,
        }

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """Training on the CPU runs under GRU4Rec's thread policy (``n_threads``, else the cores
        other processes leave free: two threads on a busy two-core machine are many times
        slower than one); the caller's thread count is restored for the epoch callback and
        afterwards. On the CPU torch's deterministic kernels are on meanwhile
        (``algorithms.base.cpu_training``)."""
        before = torch.get_num_threads()
        self._policy = None
        if self.device_.type == "cpu":
            self._policy = (
                ThreadPolicy.fixed(self.n_threads)
                if self.n_threads
                else ThreadPolicy.adaptive_default()
            )
            torch.set_num_threads(before)
        try:
            with cpu_training(self.device_):
                yield
        finally:
            self._policy = None
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    # ------------------------------------------------------------------ validation
    def validation_scores(self, valid: Sessions) -> dict[str, float]:
        """Recall@20 and MRR@20 of the current weights on every next click of ``valid``
        (prefix -> next item, the targets the evaluator scores; an unknown target is a miss;
        ties conservative: a tied item ranks above the target). Used only to pick the epoch."""
        starts, lengths = prefix_examples(valid)
        if len(starts) == 0:
            return {f"valid_recall{CUTOFF}": 0.0, f"valid_mrr{CUTOFF}": 0.0}
        targets = valid.items[starts + lengths]
        hits = np.zeros(len(starts), dtype=np.float64)
        rr = np.zeros(len(starts), dtype=np.float64)
        flat = torch.as_tensor(valid.items, device=self.device_)
        for lo in range(0, len(starts), EVAL_BATCH):
            sl = slice(lo, lo + EVAL_BATCH)
            s = torch.as_tensor(starts[sl], device=self.device_)
            ln = torch.as_tensor(lengths[sl], device=self.device_)
            rows, mask = gather_padded(flat, s, ln)
            rows = torch.where(mask, rows, torch.full_like(rows, UNKNOWN))
            scores = self._prefix_scores(rows, mask.sum(1))
            t = torch.as_tensor(targets[sl], device=self.device_)
            known = t != UNKNOWN
            ts = scores.gather(1, t.clamp(min=0)[:, None])
            rank = (scores >= ts).sum(1).double()
            ok = known & (rank <= CUTOFF)
            hits[sl] = ok.double().cpu().numpy()
            rr[sl] = torch.where(ok, 1.0 / rank, torch.zeros_like(rank)).cpu().numpy()
        return {f"valid_recall{CUTOFF}": float(hits.mean()), f"valid_mrr{CUTOFF}": float(rr.mean())}

    # ------------------------------------------------------------------ checkpoints
    def _training_key(self, train: Sessions, valid: Sessions | None) -> dict[str, Any]:
        params = {
            k: v
            for k, v in self.get_params().items()
            if k not in ("device", "n_threads", "n_epochs")
        }
        return {
            "params": params,
            "data": train.fingerprint(),
            "valid": None if valid is None else valid.fingerprint(),
        }

    def _save_training(self, path, key, epoch, net, opt, plan_gen, progress) -> None:
        state = {
            "format": TRAINING_FORMAT,
            "model": self.name,
            "key": key,
            "epoch": int(epoch),
            "history": list(self.history_),
            "best_epoch": int(self.best_epoch_),
            "network": _cpu_state(net),
            "optimizer": opt.state_dict(),
            "plan_gen": plan_gen.get_state(),
            "net_gen": net.gen.get_state().cpu(),
            "best": float(progress["best"]),
            "bad": int(progress["bad"]),
            "best_state": progress["best_state"],
        }
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    def _resume(self, path: Path, key, net, opt, plan_gen, progress) -> int:
        if not path.is_file():
            return 0
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file means: start afresh
            log.warning("%s: not readable as a training state (%s); training from epoch 1", path, e)
            return 0
        why = None
        if not isinstance(state, dict) or state.get("format") != TRAINING_FORMAT:
            why = "not a training state of this harness"
        elif state.get("model") != self.name:
            why = f"written for {state.get('model')}"
        elif state["key"] != key:
            why = "written for other hyperparameters or data"
        elif not 1 <= state["epoch"] <= self.n_epochs:
            why = f"holds epoch {state['epoch']}, more than n_epochs = {self.n_epochs}"
        if why:
            log.warning("%s: %s; training from epoch 1", path, why)
            return 0
        net.load_state_dict(state["network"])
        opt.load_state_dict(state["optimizer"])
        plan_gen.set_state(state["plan_gen"])
        net.gen.set_state(state["net_gen"])  # a CPU byte tensor, for a CUDA generator too
        progress.update(best=state["best"], bad=state["bad"], best_state=state["best_state"])
        self.history_ = list(state["history"])
        self.best_epoch_ = int(state["best_epoch"])
        log.info("%s: continuing after epoch %d from %s", self.name, state["epoch"], path)
        return int(state["epoch"])

    def save(self, path: str | Path) -> None:
        """Write the fitted model (hyperparameters, weights, history) to ``path``."""
        torch.save(
            {
                "format": MODEL_FORMAT,
                "model": self.name,
                "params": self.get_params(),
                "n_items": int(self.n_items_),
                "network": _cpu_state(self.network_),
                "history": list(self.history_),
                "best_epoch": int(self.best_epoch_),
            },
            Path(path),
        )

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> NeuralRecommender:
        """A fitted model from :meth:`save`'s file, on ``device`` (default: the saved one)."""
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != MODEL_FORMAT:
            raise ValueError(f"{path}: not a saved neural model")
        if ckpt["model"] != cls.name:
            raise ValueError(f"{path}: a saved {ckpt['model']} model, not {cls.name}")
        model = cls._restored(ckpt, device)
        model.best_epoch_ = int(ckpt["best_epoch"])
        net = model._network(model.n_items_, torch.Generator().manual_seed(0))
        net.load_state_dict(ckpt["network"])
        model.network_ = net.to(model.device_).eval()
        return model

    def __getstate__(self) -> dict[str, Any]:  # pickling: the network without its generator
        state = dict(self.__dict__)
        if "network_" in state:
            state["network_"] = state["network_"].cpu()
            state["_net_device"] = str(self.device_)
            state["network_"].gen = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        device = state.pop("_net_device", None)
        self.__dict__.update(state)
        if device is not None:
            self.network_ = self.network_.to(device)

    # ------------------------------------------------------------------ inference
    def incremental(self) -> bool:
        """Whether ``step`` keeps each slot's session vector up to date click by click instead
        of recomputing it from the whole prefix: when the network can (``advance``) and the
        kept window only grows (no truncation, or the first ``max_len`` clicks kept)."""
        return hasattr(self.network_, "advance") and (
            self.max_len is None or self.truncate == "first"
        )

    def init_state(self, n_slots: int) -> dict[str, torch.Tensor]:
        """Each slot's prefix so far (item indices, -1 beyond its length) and its length; for an
        incremental network its running state instead (``len``: the clicks it holds)."""
        dev = self.device_
        state = {"len": torch.zeros(n_slots, dtype=torch.long, device=dev)}
        if self.incremental():
            state.update(self.network_.start_state(n_slots, min(self.max_len or 8, 64)))
        else:
            state["items"] = torch.full((n_slots, 8), UNKNOWN, dtype=torch.long, device=dev)
        return state

    def step(self, state: dict[str, torch.Tensor], items: np.ndarray, reset: np.ndarray):
        """Append each slot's click to its prefix (an ``UNKNOWN`` click is skipped: there is no
        vector for it) and score every item from the whole prefix, all slots at once. A slot
        whose prefix is empty (only unknown clicks) scores 0 everywhere."""
        with torch.no_grad():
            if "items" not in state:
                return self._incremental_scores(state, items, reset)
            return self._prefix_scores(*self._append(state, items, reset))

    def step_ranked(
        self, state: dict[str, torch.Tensor], items: np.ndarray, reset: np.ndarray, rank
    ):
        """``step`` for the evaluator: the scores go into the evaluator's reused buffer
        (``rank.buffer``) and are ranked there; the ranks are those of ``step``'s scores."""
        with torch.no_grad():
            scores = rank.buffer(len(items), torch.float32, self.device_)
            if "items" not in state:
                return rank(self._incremental_scores(state, items, reset, into=scores))
            buf, lengths = self._append(state, items, reset)
            return rank(self._prefix_scores(buf, lengths, into=scores))

    def _incremental_scores(
        self,
        state: dict[str, torch.Tensor],
        items: np.ndarray,
        reset: np.ndarray,
        into: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``step`` of an incremental network: each slot's known click advances its state by
        one position (none once it holds ``max_len``: the first ones are kept), then every
        slot's session vector is read off its state."""
        net, dev = self.network_, self.device_
        was_training = net.training
        net.eval()
        items_t = torch.as_tensor(np.asarray(items, dtype=np.int64), device=dev)
        reset_t = torch.as_tensor(np.asarray(reset, dtype=bool), device=dev)
        lengths = torch.where(reset_t, torch.zeros_like(state["len"]), state["len"])
        moves = items_t != UNKNOWN
        if self.max_len is not None:
            moves &= lengths < self.max_len
        rows = torch.nonzero(moves).flatten()
        if len(rows):
            net.advance(state, rows, lengths[rows], items_t[rows] + 1)
        lengths = lengths + moves.long()
        state["len"] = lengths
        nonempty = torch.nonzero(lengths > 0).flatten()
        out = self._empty_scores(len(lengths), len(nonempty), into)
        if len(nonempty):
            self._write_scores(net.state_vectors(state, nonempty, lengths[nonempty]), nonempty, out)
        net.train(was_training)
        return out

    def _empty_scores(self, n: int, n_nonempty: int, into: torch.Tensor | None) -> torch.Tensor:
        """The (n, n_items) output: ``into`` or a new tensor, zeroed only when no row gets
        scores (:meth:`_write_scores` writes every row otherwise)."""
        if into is None:
            make = torch.zeros if n_nonempty == 0 else torch.empty
            return make(n, self.n_items_, device=self.device_)
        if n_nonempty == 0:
            into.zero_()
        return into

    def _write_scores(
        self, vectors: torch.Tensor, nonempty: torch.Tensor, out: torch.Tensor
    ) -> None:
        """The scores of ``vectors`` into the rows ``nonempty`` of ``out``, 0 in the others: the
        other rows get a zero vector, so one product writes all of ``out`` in place (no second
        product, zeroing and scatter)."""
        if len(nonempty) < len(out):
            full = vectors.new_zeros((len(out), vectors.shape[1]))
            full[nonempty] = vectors
            vectors = full
        self.network_.scores(vectors, into=out)

    def _append(self, state: dict[str, torch.Tensor], items: np.ndarray, reset: np.ndarray):
        """Append each slot's known click to its prefix; the prefixes and their lengths."""
        dev = self.device_
        items_t = torch.as_tensor(np.asarray(items, dtype=np.int64), device=dev)
        reset_t = torch.as_tensor(np.asarray(reset, dtype=bool), device=dev)
        lengths = torch.where(reset_t, torch.zeros_like(state["len"]), state["len"])
        known = items_t != UNKNOWN
        if bool((lengths >= state["items"].shape[1]).any()):
            pad = torch.full_like(state["items"], UNKNOWN)
            state["items"] = torch.cat([state["items"], pad], dim=1)
        rows = torch.arange(len(items_t), device=dev)
        buf = state["items"]
        buf[rows[known], lengths[known]] = items_t[known]
        lengths = lengths + known.long()
        state["len"] = lengths
        return buf, lengths

    def _prefix_scores(
        self, buf: torch.Tensor, lengths: torch.Tensor, into: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(n, n_items) scores of n prefixes (rows of ``buf``, item indices, first ``lengths``
        real), after this model's truncation; 0 for empty prefixes. Written into ``into`` (a
        float32 (n, n_items) tensor) when given; else a new tensor."""
        net = self.network_
        was_training = net.training
        net.eval()
        nonempty = torch.nonzero(lengths > 0).flatten()
        out = self._empty_scores(len(lengths), len(nonempty), into)
        if len(nonempty):
            ln = lengths[nonempty]
            starts, ln = truncate_window(torch.zeros_like(ln), ln, self.max_len, self.truncate)
            sub = buf[nonempty]
            ar = torch.arange(max(int(ln.max()), 1), device=self.device_)
            mask = ar[None, :] < ln[:, None]
            pos = (starts[:, None] + ar[None, :]).clamp(max=sub.shape[1] - 1)
            rows = torch.where(mask, sub.gather(1, pos) + 1, torch.zeros_like(pos))
            with torch.no_grad():
                self._write_scores(net.session_vectors(rows, mask), nonempty, out)
        net.train(was_training)
        return out


def _cpu_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
