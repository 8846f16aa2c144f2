"""The LightningModule that trains and validates a LoFTR-family matcher: wiring only.

The batch contract (data/batch.py), the ground truth (geometry/ground_truth.py), the model (models/), the
losses and their targets (losses/), the pair scorer (evaluation/scoring.py), the figures (evaluation/plots.py)
and the learning-rate schedule (schedule.py) live elsewhere; this module runs them in Lightning's loop: it
checks each batch once, computes its ground truth once (before the forward, which pads the training matches
with it), skips non-finite steps, aggregates validation metrics over all pairs of all ranks and logs a few
match figures.
"""

import warnings
from dataclasses import asdict

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

from data.batch import check_batch
from evaluation.metrics import PairResult, summarize
from evaluation.plots import figure_to_rgb, scored_matches_figure
from evaluation.scoring import score_matches
from geometry.grid import grid_size
from geometry.ground_truth import supervision_for
from losses.for_model import loss_for
from models.checkpoint import load_checkpoint
from models.family import build_model, family_of
from models.result import MatchResult

from .config import TrainingConfig
from .figures import log_image

# validation metrics are computed from every rank's pairs on every rank (all_gather), so they need no
# sync_dist reduction; Lightning's advice to add one does not apply
warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")


class NonFiniteLossError(RuntimeError):
    pass


class LoFTRModule(pl.LightningModule):
    def __init__(self, config: TrainingConfig):
        super().__init__()
        self.config = config
        # plain containers only, so our checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters({"training": asdict(config)})
        self.model = build_model(config.model)  # LoFTR or Efficient LoFTR, by the config's type
        self.loss = loss_for(self.model, config.loss)
        if config.init_checkpoint is not None:
            load_checkpoint(self.model, config.init_checkpoint, trusted=config.trust_init_checkpoint)
        if config.freeze_backbone:
            self.model.backbone.requires_grad_(False)
        self.nonfinite_steps = 0  # skipped in a row
        self.skipped_steps = 0  # skipped in all
        # each validation pair with the loss of its batch and the index of its dataloader
        self._val_results: list[tuple[PairResult, float, int]] = []

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_backbone:
            self.model.backbone.eval()  # frozen batch-norm statistics too
        return self

    # ------------------------------------------------------------------------------------------- training

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor | None:
        check_batch(batch)
        # the backbone's grids, before the forward that needs the ground truth for its training pads
        grid0 = grid_size(batch["image0"].shape[2:], self.model.coarse_stride)
        grid1 = grid_size(batch["image1"].shape[2:], self.model.coarse_stride)
        supervision = self._supervision(batch, grid0, grid1)
        ground_truth = (supervision.batch_index, supervision.index0, supervision.index1)
        result = self.model(batch, ground_truth=ground_truth, **self.loss.model_options)
        parts = self.loss(result, supervision)
        if not self._all_ranks_finite(parts.total):
            return self._skip_step()
        self.nonfinite_steps = 0
        size = batch["image0"].shape[0]
        self.log("train/loss", parts.total.detach(), prog_bar=True, batch_size=size)
        self.log_dict({"train/coarse_loss": parts.coarse, "train/fine_loss": parts.fine,
                       "train/ground_truth_matches": float(parts.num_ground_truth),
                       "train/fine_supervised": float(parts.num_fine_supervised)}, batch_size=size)
        return parts.total

    def _supervision(self, batch: dict, grid0: tuple[int, int], grid1: tuple[int, int]):
        """Dense or sparse ground truth; dense on the fine grid too where a fine target may lie off the cell
        centres: the loss's pixel windows (Efficient LoFTR, the window cross-entropy), or at inference queries
        chosen near the centre (LoFTR's query_radius; training always queries the centre)."""
        queries_off_centre = family_of(self.model).queries_off_centre(self.config.model)
        off_centre = self.loss.reads_fine_grid or (not self.training and queries_off_centre)
        window = self.loss.window
        return supervision_for(batch, grid0, grid1, self.model.coarse_stride,
                               window.fine_stride if off_centre else None, window.origin)

    def _all_ranks_finite(self, loss: torch.Tensor) -> bool:
        """True when the loss is finite on every rank: all ranks then skip or step together (DDP)."""
        finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def _skip_step(self) -> None:
        self.nonfinite_steps += 1
        self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps), batch_size=1)
        if self.nonfinite_steps > self.config.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"the loss was NaN or inf for {self.nonfinite_steps} steps in a row (step {self.global_step}); "
                f"{self.skipped_steps} steps skipped in all. Lower the learning rate, check the data (NaN "
                f"images or depth) or use 32-bit precision")
        return None  # Lightning skips the backward pass and the optimizer step

    def configure_optimizers(self):
        settings = self.config.optimizer
        parameters = [p for p in self.parameters() if p.requires_grad]
        def decays(p):
            return settings.decay_biases_and_norms or p.ndim > 1  # biases, norm scales: 1-d
        groups = [{"params": [p for p in parameters if decays(p)], "weight_decay": settings.weight_decay},
                  {"params": [p for p in parameters if not decays(p)], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.learning_rate())
        total_steps = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        warmup_steps = settings.scaled_warmup_steps(self.true_batch_size())
        # stateless in the step and epoch counters, which checkpoints restore: a resumed run gets the same rates
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda _: settings.factor(self.global_step, self.current_epoch, total_steps, warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def true_batch_size(self) -> int:
        """Pairs per optimizer step: per device x devices x accumulated batches; the reference batch size
        when no trainer is attached (nothing scales then)."""
        if self._trainer is None:
            return self.config.optimizer.reference_batch_size
        per_device = self.trainer.datamodule.config.batch_size if self.trainer.datamodule is not None else 1
        return per_device * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def learning_rate(self) -> float:
        """`lr`, scaled linearly from the reference batch size to the true one, as LoFTR scales it."""
        settings = self.config.optimizer
        if not settings.scale_lr:
            return settings.lr
        return settings.lr * self.true_batch_size() / settings.reference_batch_size

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the random ground-truth padding draws from torch's generator: restoring it makes a resumed run
        # repeat the uninterrupted one exactly (the data order is seeded by epoch already)
        checkpoint["rng_state"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if state is not None:
            torch.set_rng_state(state["cpu"])
            if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(state["cuda"])

    # ----------------------------------------------------------------------------------------- validation

    def on_validation_epoch_start(self) -> None:
        self._val_results = []

    def validation_step(self, batch: dict, batch_index: int, dataloader_idx: int = 0) -> None:
        check_batch(batch)
        result = self.model(batch, **self.loss.model_options)
        # the loss of the model's own matches (no ground-truth padding at evaluation): it falls as it learns
        grid0, grid1 = result.coarse_grid0, result.coarse_grid1
        loss = float(self.loss(result, self._supervision(batch, grid0, grid1)).total)
        for sample in range(batch["image0"].shape[0]):
            scored, errors = self._score(batch, result, sample)
            self._val_results.append((scored, loss, dataloader_idx))
            if self.global_rank == 0 and batch_index < self.config.validation.num_figures and sample == 0:
                self._log_figure(batch, result, errors, batch_index if dataloader_idx == 0
                                 else f"{dataloader_idx}_{batch_index}")

    def _matches(self, result: MatchResult, sample: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = result.batch_index == sample
        return (result.keypoints0[chosen].double().cpu().numpy(), result.keypoints1[chosen].double().cpu().numpy())

    def _score(self, batch: dict, result: MatchResult, sample: int) -> tuple[PairResult, np.ndarray | None]:
        """The pair's result, scored as evaluate.py scores it, and its per-match epipolar errors (pose pairs)."""
        kpts0, kpts1 = self._matches(result, sample)
        names = batch.get("pair_names")
        name = " ".join(str(n[sample]) for n in names) if names is not None else f"{self.global_rank}:{sample}"
        if "T_0to1" in batch:
            geometry = {key: batch[key][sample].double().cpu().numpy() for key in ("K0", "K1", "T_0to1")}
        else:  # homography pairs are made at the network size: its frame is the original one
            geometry = {"H_0to1": batch["H_0to1"][sample].double().cpu().numpy(),
                        "image0_size": tuple(batch["image0"].shape[2:])}
        return score_matches(kpts0, kpts1, name=name, group=str(batch.get("scene_name", [""])[sample]),
                             epipolar_threshold=self.config.validation.epipolar_threshold,
                             ransac_seed=self.config.validation.ransac_seed, **geometry)

    def _log_figure(self, batch: dict, result: MatchResult, errors: np.ndarray | None, index: int | str) -> None:
        if self.logger is None:
            return
        kpts0, kpts1 = self._matches(result, 0)
        images = [batch[f"image{side}"][0, 0].float().cpu().numpy() for side in (0, 1)]
        # keypoints are in original pixels; the images shown are the network inputs
        scales = [batch[f"scale{side}"][0].double().cpu().numpy() if f"scale{side}" in batch else np.ones(2)
                  for side in (0, 1)]
        confidence = result.confidence[result.batch_index == 0].float().cpu().numpy()
        figure = scored_matches_figure(images[0], images[1], kpts0 / scales[0], kpts1 / scales[1],
                                       f"step {self.global_step}", errors=errors,
                                       threshold=self.config.validation.epipolar_threshold, confidence=confidence)
        log_image(self.logger, f"val/matches_{index}", figure_to_rgb(figure), self.global_step)

    def on_validation_epoch_end(self) -> None:
        self._log_summary("val")

    def _log_summary(self, stage: str) -> None:
        """Each dataloader scored by its own kind (pose: AUC@5/10/20 and epipolar precision; homography: corner-
        error AUC@1/3/5/10). One dataloader: `{stage}/auc@20`, ... Several: each under `{stage}/{kind}_{index}/`
        (`val/pose_0/auc@20`, `val/homography_1/auc@10`), and the plain keys the checkpoint monitor reads
        (`val/auc@10`, `val/auc@20`, ...) as the mean over the dataloaders that have that metric; `loss`
        is always the mean over all pairs."""
        gathered = self._gather(self._val_results)
        if not gathered:
            return
        loaders = sorted({loader for _, _, loader in gathered})
        summaries = {}
        for loader in loaders:
            results = [result for result, _, index in gathered if index == loader]
            kind = "pose" if results[0].pose is not None else "homography"
            summary = summarize(results, kind)
            summary.pop("runtime_ms")
            summaries[f"{kind}_{loader}"] = summary
        if len(summaries) == 1:
            overall = next(iter(summaries.values()))
        else:
            keys = dict.fromkeys(key for summary in summaries.values() for key in summary if key != "pairs")
            overall = {key: float(np.mean([s[key] for s in summaries.values() if key in s])) for key in keys}
            overall["pairs"] = float(len(gathered))
        metrics = {f"{stage}/{key}": value for key, value in overall.items()}
        metrics[f"{stage}/loss"] = float(np.mean([loss for _, loss, _ in gathered]))
        if len(summaries) > 1:
            metrics.update({f"{stage}/{name}/{key}": value for name, summary in summaries.items()
                            for key, value in summary.items()})
        # every rank holds every pair now: the same numbers on each, no further reduction
        self.log_dict(metrics, batch_size=1, rank_zero_only=False, sync_dist=False)

    def _gather(self, results: list[tuple[PairResult, float, int]]) -> list[tuple[PairResult, float, int]]:
        """All ranks' results, each pair of each dataloader once: the distributed sampler pads ranks to equal
        length by repeating pairs, which would count twice."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[list] = [[] for _ in range(dist.get_world_size())]
            dist.all_gather_object(gathered, results)
            results = [result for part in gathered for result in part]
        unique = {}
        for result, loss, loader in results:
            unique.setdefault((loader, result.name), (result, loss, loader))
        return [unique[key] for key in sorted(unique)]

    def test_step(self, batch: dict, batch_index: int, dataloader_idx: int = 0) -> None:
        self.validation_step(batch, batch_index, dataloader_idx)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def on_test_epoch_end(self) -> None:
        self._log_summary("test")
