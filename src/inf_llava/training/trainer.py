"""The training loop: both INF-LLaVA stages on one CPU or many GPUs, through accelerate.

One code path for every engine: ``accelerate`` wraps the model and optimizer (single process, DDP under ``torchrun``
or ``accelerate launch``, FSDP / DeepSpeed from an accelerate config), handles bf16 autocast and the
gradient-accumulation syncs. The data order is this package's own (:class:`~inf_llava.data.sampler.SamplingPlan`):
each process builds its micro-batches from the step number, so a resumed run sees exactly the samples the
uninterrupted run would have, and the loss is normalised by the supervised tokens of the whole global batch (see
:mod:`~inf_llava.training.objective`).

Outputs in ``config.output``: the trained model + processor (loadable with ``from_pretrained``), ``mm_projector.bin``
after ``pretrain`` (official stage-1 layout), ``metrics.jsonl``, ``loss.png``, ``train_config.yaml``,
``skipped.jsonl`` when ``skip_invalid`` left samples out, ``lora_adapter/`` with LoRA, and ``checkpoint-<step>/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.collate import TrainingBatch, TrainingCollator
from ..data.dataset import InvalidExample, LlavaDataset
from ..data.llava_format import InvalidRecord, load_records
from ..data.sampler import SamplingPlan, StepBatchSampler
from ..errors import DataError, ModelLoadError
from ..jsonl import JsonlAppender, atomic_write_text
from ..processing.tokenization import IGNORE_INDEX
from .checkpoint import (
    list_checkpoints,
    make_state_hooks,
    read_state,
    remove_stale_temporaries,
    resolve_resume,
    save_checkpoint,
)
from .config import TrainConfig
from .lora import apply_lora, check_qlora_available, qlora_quantization_config
from .metrics import LOSS_PLOT, METRICS_FILE, MetricsLog, plot_loss
from .objective import CausalLMObjective
from .optim import build_optimizer, build_scheduler
from .stages import apply_stage

SKIPPED_FILE = "skipped.jsonl"
CONFIG_FILE = "train_config.yaml"
ADAPTER_FILE = "mm_projector.bin"
LORA_DIR = "lora_adapter"
MODEL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class TrainResult:
    """What a run did: the step reached, whether it finished, the last logged loss and the skipped samples."""

    output: Path
    global_step: int
    total_steps: int
    completed: bool
    last_loss: float | None
    trainable_parameters: dict[str, int]
    skipped: list[InvalidRecord] = field(default_factory=list)


def train(config: TrainConfig, *, stop_after: int | None = None) -> TrainResult:
    """Run (or resume) training. ``stop_after=k`` stops after optimizer step ``k`` with a checkpoint there (for
    time-sliced jobs); the run can then be resumed with ``resume_from="latest"``."""
    return Trainer(config).run(stop_after=stop_after)


class Trainer:
    """One training run. Build with a :class:`TrainConfig`, call :meth:`run`."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.output = Path(config.output)

    # ---- set-up -----------------------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> TrainResult:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed

        cfg = self.config
        accelerator = Accelerator(
            mixed_precision="bf16" if cfg.bf16 else "no",
            gradient_accumulation_steps=cfg.grad_accum,
            # Every trainable parameter takes part in every step (see objective.py), except an unfrozen tower's
            # layers past the feature layer's output (its post-LayerNorm, a pooling head), which DDP must be told of.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.unfreeze_vision_tower)],
            # Without cpu=True accelerate ignores torchrun's environment on a machine without GPUs and each
            # process would train alone; with it, CPU processes form a gloo group.
            # DeepSpeed brings its own CPU accelerator, and accelerate only enables DeepSpeed with cpu=False.
            cpu=not _has_accelerator_device() and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() != "true",
        )
        self.accelerator = accelerator
        if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not sharded_engine(accelerator):
            # accelerate turns an FSDP config into FSDP only on GPU-class devices; on CPU it runs plain DDP.
            accelerator.print(f"note: FSDP needs GPUs; this run uses {accelerator.distributed_type.value} instead")
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != accelerator.num_processes:
            raise RuntimeError(
                f"launched as {launched} processes but accelerate set up {accelerator.num_processes}; "
                "check the launcher and the accelerate config"
            )
        if cfg.lora and sharded_engine(accelerator):
            raise ValueError("--lora is supported with single-process and DDP training, not FSDP / DeepSpeed")
        resume = self._prepare_output()
        set_seed(cfg.seed)
        model, processor, peft_model, counts = self._load_model()
        template = cfg.template or cfg.policy.template or processor.template
        dataset, skipped = self._load_data(processor, template)
        plan = SamplingPlan(
            num_samples=len(dataset),
            batch_size=cfg.batch_size,
            world_size=accelerator.num_processes,
            grad_accum=cfg.grad_accum,
            seed=cfg.seed,
            group_by_modality_length=cfg.group_by_modality_length,
            lengths=tuple(abs(n) for n in dataset.modality_lengths),
            multimodal=tuple(s.has_images for s in dataset.samples),
        )
        total_steps = cfg.max_steps or math.ceil(cfg.epochs * plan.steps_per_epoch)
        objective = CausalLMObjective(model)
        optimizer = build_optimizer(objective, cfg.lr, cfg.weight_decay)
        scheduler = build_scheduler(optimizer, cfg.lr_scheduler, cfg.warmup_ratio, total_steps)
        if accelerator.distributed_type == DistributedType.DEEPSPEED:
            # The data loader is ours (not prepared), so DeepSpeed's "auto" sizes are filled in here.
            ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
            ds_config["train_micro_batch_size_per_gpu"] = cfg.batch_size
            ds_config["gradient_clipping"] = cfg.max_grad_norm
            _fill_zero_buckets(ds_config, model.config.text_config.hidden_size)
        objective, optimizer = accelerator.prepare(objective, optimizer)
        save_hook, load_hook = make_state_hooks(accelerator)
        accelerator.register_save_state_pre_hook(save_hook)
        accelerator.register_load_state_pre_hook(load_hook)

        start_step, runtime_skipped = 0, []
        if resume is not None:
            state = self._check_resume(resume, plan, total_steps)
            accelerator.load_state(str(resume))
            scheduler.load_state_dict(state["scheduler"])
            start_step = state["global_step"]
            runtime_skipped = [InvalidRecord(**r) for r in state.get("skipped_at_runtime", [])]
            accelerator.print(f"resuming from {resume} at step {start_step}/{total_steps}")
        if accelerator.is_main_process:
            rows = [r.to_dict() for r in skipped + runtime_skipped]
            atomic_write_text(self.output / SKIPPED_FILE, "".join(_json_line(row) for row in rows))
        self._report_counts(counts, plan, total_steps)

        run = _Run(
            trainer=self,
            objective=objective,
            optimizer=optimizer,
            scheduler=scheduler,
            dataset=dataset,
            plan=plan,
            processor=processor,
            total_steps=total_steps,
            start_step=start_step,
            runtime_skipped=runtime_skipped,
        )
        end_step = total_steps if stop_after is None else min(total_steps, max(stop_after, start_step))
        last_loss = run.loop(end_step)
        completed = end_step == total_steps
        if completed:
            self._save_final(objective, processor, peft_model, template)
        elif end_step > start_step:
            run.checkpoint(end_step)
        accelerator.wait_for_everyone()
        return TrainResult(
            output=self.output,
            global_step=end_step,
            total_steps=total_steps,
            completed=completed,
            last_loss=last_loss,
            trainable_parameters=counts,
            skipped=skipped + run.runtime_skipped,
        )

    def _prepare_output(self) -> Path | None:
        """Refuse to clobber an earlier run unless asked; clean temporaries; pick the checkpoint to resume."""
        cfg, accelerator = self.config, self.accelerator
        existing = list_checkpoints(self.output)
        if cfg.resume_from is None and (existing or (self.output / CONFIG_FILE).exists()):
            if not cfg.overwrite_output:
                what = existing[-1][1].name if existing else CONFIG_FILE
                raise ValueError(
                    f"{self.output} already holds a training run ({what}); pass --resume-from latest to continue it, "
                    "--overwrite-output to start over, or another --output"
                )
            if accelerator.is_main_process:
                for _, path in existing:
                    shutil.rmtree(path)
        resume = resolve_resume(self.output, cfg.resume_from)
        if cfg.resume_from == "latest" and resume is None:
            if (self.output / CONFIG_FILE).exists() and not cfg.overwrite_output:
                raise ValueError(f"{self.output} holds a finished run without checkpoints; nothing to resume")
            accelerator.print(f"no checkpoint in {self.output} yet: starting from step 0")
        if accelerator.is_main_process:
            self.output.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.output)
        accelerator.wait_for_everyone()
        return resume

    def _load_model(self):
        from ..modeling.inf_llava import InfLlavaForConditionalGeneration
        from ..processing.processor import InfLlavaProcessor

        cfg = self.config
        kwargs: dict[str, Any] = {"dtype": MODEL_DTYPES[cfg.model_dtype]}
        if cfg.qlora:
            check_qlora_available()
            kwargs["quantization_config"] = qlora_quantization_config()
            kwargs["device_map"] = {"": self.accelerator.local_process_index}
        try:
            with _whole_model_loading(self.accelerator):
                model = InfLlavaForConditionalGeneration.from_pretrained(cfg.model, **kwargs)
            processor = InfLlavaProcessor.from_pretrained(cfg.model)
        except OSError as exc:
            raise ModelLoadError(f"{cfg.model}: cannot load the model ({' '.join(str(exc).split())})") from None
        if cfg.adapter:
            from ..conversion.adapter import load_official_adapter

            load_official_adapter(model, cfg.adapter)
        if cfg.qlora:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        peft_model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) if cfg.lora else None
        counts = apply_stage(model, cfg.policy, unfreeze_vision_tower=cfg.unfreeze_vision_tower, lora=cfg.lora)
        if cfg.gradient_checkpointing:
            # Non-reentrant checkpointing works with frozen inputs (stage 1, LoRA) without enable_input_require_grads.
            enable = getattr(model, "activation_checkpointing_enable", None)  # the name since transformers 5.2x
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        return model, processor, peft_model, counts

    def _load_data(self, processor, template: str) -> tuple[LlavaDataset, list[InvalidRecord]]:
        cfg, accelerator = self.config, self.accelerator
        samples, skipped = load_records(cfg.data, cfg.image_folder, skip_invalid=cfg.skip_invalid, template=template)
        # Fetch-time problems come back as InvalidExample (never raised inside DataLoader workers, whose re-raised
        # errors carry a worker traceback); the loop then stops or skips, the same on every process.
        images = training_image_processor(processor, cfg.image_aspect_ratio)
        dataset = LlavaDataset(
            samples, processor, template, cfg.max_length, cfg.max_image_pixels, True, image_processor=images
        )
        if cfg.verify_data:
            # Each process decodes and tokenises its share; the failures are pooled.
            mine = [
                item.record
                for i in range(accelerator.process_index, len(dataset), accelerator.num_processes)
                if isinstance(item := dataset[i], InvalidExample)
            ]
            failed = accelerator.gather_object(mine) if accelerator.num_processes > 1 else mine
            if failed and not cfg.skip_invalid:
                raise DataError(min(failed, key=_position).message)
            if failed:
                bad = {(r.where, r.sample_id) for r in failed}
                skipped += sorted(failed, key=_position)
                samples = [s for s in samples if (s.where, s.sample_id) not in bad]
                dataset = LlavaDataset(
                    samples, processor, template, cfg.max_length, cfg.max_image_pixels, True, image_processor=images
                )
        if skipped:
            accelerator.print(
                f"skipped {len(skipped)} invalid sample(s), listed in {self.output / SKIPPED_FILE}; "
                f"first: {skipped[0].message}"
            )
        if not len(dataset):
            raise ValueError(f"{cfg.data}: no valid samples left to train on")
        return dataset, skipped

    def _check_resume(self, path: Path, plan: SamplingPlan, total_steps: int) -> dict[str, Any]:
        state = read_state(path)
        cfg = self.config
        saved = state.get("sampling", {})
        for key, value in plan.fingerprint().items():
            if saved.get(key) != value:
                raise ValueError(
                    f"{path}: cannot resume: {key} was {saved.get(key)!r} and is now {value!r} (the run would see "
                    "other samples at the same steps); resume with the same data and global batch"
                )
        expected = {"total_steps": total_steps, "stage": cfg.stage, "lora": cfg.lora}
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(f"{path}: cannot resume: {key} was {state.get(key)!r} and is now {value!r}")
        return state

    def _report_counts(self, counts: dict[str, int], plan: SamplingPlan, total_steps: int) -> None:
        trained = ", ".join(f"{group} {n:,}" for group, n in counts.items() if n)
        engine = self.accelerator.distributed_type.value
        self.accelerator.print(
            f"{self.config.stage} ({engine}): training {trained} parameters; {plan.num_samples} samples, global batch "
            f"{plan.global_batch} ({plan.world_size} process(es) x {plan.batch_size} x {plan.grad_accum} "
            f"accumulation), {total_steps} steps"
        )

    # ---- outputs ----------------------------------------------------------------------------------------------
    def _save_final(self, objective, processor, peft_model, template: str) -> None:
        """Write the trained model, processor and extras; files land in the output directory one atomic rename at
        a time, ``config.json`` last, so a directory with a config has complete weights."""
        accelerator, cfg = self.accelerator, self.config
        accelerator.wait_for_everyone()
        # Gathering the full weights is a collective under FSDP / ZeRO-3; elsewhere the unwrapped model has them.
        state_dict = accelerator.get_state_dict(objective) if sharded_engine(accelerator) else None
        if accelerator.is_main_process:
            model = accelerator.unwrap_model(objective).model
            if state_dict is not None:
                state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
            staging = self.output / ".final.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            if peft_model is not None:
                peft_model.save_pretrained(staging / LORA_DIR)
                model = peft_model.merge_and_unload()
            model.save_pretrained(staging, state_dict=state_dict)
            if cfg.policy.template is None:
                processor.template = template  # stage 2 tunes the chat template: the saved processor uses it
            processor.save_pretrained(staging)
            if cfg.policy.export_adapter:
                from ..conversion.adapter import save_official_adapter

                save_official_adapter(model, staging / ADAPTER_FILE)
            atomic_write_text(staging / CONFIG_FILE, self.config.to_yaml())
            _publish(staging, self.output)
            metrics = self.output / METRICS_FILE
            if metrics.exists():
                plot_loss(metrics, self.output / LOSS_PLOT, title=f"INF-LLaVA {cfg.stage}")
            accelerator.print(f"saved the trained model to {self.output}")
        accelerator.wait_for_everyone()


@dataclass
class _Run:
    """The state of the loop (kept apart from set-up so the loop reads top to bottom)."""

    trainer: Trainer
    objective: Any
    optimizer: Any
    scheduler: Any
    dataset: LlavaDataset
    plan: SamplingPlan
    processor: Any
    total_steps: int
    start_step: int
    runtime_skipped: list[InvalidRecord]

    def __post_init__(self) -> None:
        self.accelerator = self.trainer.accelerator
        self.config = self.trainer.config
        self.filler = _filler_batch(self.processor)

    def loop(self, end_step: int) -> float | None:
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        accelerator, cfg, plan = self.accelerator, self.config, self.plan
        main = accelerator.is_main_process
        sampler = StepBatchSampler(plan, accelerator.process_index, self.start_step, end_step)
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=TrainingCollator(self.processor.pad_token_id),
            num_workers=cfg.num_workers,
        )
        batches = iter(loader)
        metrics = MetricsLog(self.trainer.output / METRICS_FILE, self.start_step or None) if main else None
        skipped_log = JsonlAppender(self.trainer.output / SKIPPED_FILE) if main else None
        trainable = [p for p in self.objective.parameters() if p.requires_grad]
        device = accelerator.device
        progress = tqdm(
            total=self.total_steps,
            initial=self.start_step,
            desc=cfg.stage,
            disable=not (main and cfg.progress),
            dynamic_ncols=True,
        )
        last_loss = None
        window_start, window_samples = time.perf_counter(), 0
        try:
            for step in range(self.start_step, end_step):
                micro = [next(batches) for _ in range(cfg.grad_accum)]
                local = [sum(b.num_supervised for b in micro), sum(len(b.indices) for b in micro)]
                local.append(sum(len(b.invalid) for b in micro))
                tokens, samples, invalid = accelerator.reduce(torch.tensor(local, device=device), "sum").tolist()
                if invalid:
                    self._handle_invalid(micro, skipped_log)
                scale = plan.world_size * cfg.grad_accum / max(tokens, 1)
                loss_sum = torch.zeros((), device=device)
                for batch in micro:
                    with accelerator.accumulate(self.objective):
                        loss = self.objective(**(self.filler if batch.empty else batch).model_inputs(device))
                        accelerator.backward(loss * scale)
                    loss_sum += loss.detach().float()
                grad_norm = None
                if cfg.max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
                lr = self.scheduler.get_last_lr()[0]
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                done = step + 1
                window_samples += samples
                progress.update(1)
                if done % cfg.logging_steps == 0 or done == end_step:
                    last_loss = accelerator.reduce(loss_sum, "sum").item() / max(tokens, 1)
                    elapsed = time.perf_counter() - window_start
                    row = {
                        "step": done,
                        "epoch": round(done / plan.steps_per_epoch, 6),
                        "loss": last_loss,
                        "lr": lr,
                        "grad_norm": None if grad_norm is None else float(grad_norm),
                        "tokens": int(tokens),
                        "samples": int(samples),
                        "samples_per_s": round(window_samples / elapsed, 3) if elapsed > 0 else None,
                    }
                    window_start, window_samples = time.perf_counter(), 0
                    if metrics is not None:
                        metrics.write(row)
                        progress.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
                if cfg.save_steps and done % cfg.save_steps == 0 and done < end_step:
                    self.checkpoint(done)
        finally:
            progress.close()
            if metrics is not None:
                metrics.close()
            if skipped_log is not None:
                skipped_log.close()
        return last_loss

    def _handle_invalid(self, micro: list[TrainingBatch], log: JsonlAppender | None) -> None:
        """Samples that failed while their batch was built: stop with the first one's error, or (skip_invalid) list
        them in ``skipped.jsonl``. Every process takes the same decision from the pooled records."""
        mine = [example.record for batch in micro for example in batch.invalid]
        records = self.accelerator.gather_object(mine) if self.accelerator.num_processes > 1 else mine
        if not self.config.skip_invalid:
            raise DataError(f"{records[0].message} (--skip-invalid would leave it out)")
        self.runtime_skipped.extend(records)
        if log is not None:
            for record in records:
                log.write(record.to_dict())
        self.accelerator.print(f"skipped {len(records)} sample(s) at run time; first: {records[0].message}")

    def checkpoint(self, step: int) -> None:
        cfg = self.config
        state = {
            "global_step": step,
            "total_steps": self.total_steps,
            "epoch": step / self.plan.steps_per_epoch,
            "stage": cfg.stage,
            "lora": cfg.lora,
            "sampling": self.plan.fingerprint(),
            "scheduler": self.scheduler.state_dict(),
            "skipped_at_runtime": [dataclasses.asdict(r) for r in self.runtime_skipped],
            "world_size": self.plan.world_size,
            "batch_size": self.plan.batch_size,
            "grad_accum": self.plan.grad_accum,
        }
        save_checkpoint(self.accelerator, self.trainer.output, step, state, keep_last=cfg.save_total_limit)
        if self.accelerator.is_main_process and (self.trainer.output / METRICS_FILE).exists():
            plot_loss(self.trainer.output / METRICS_FILE, self.trainer.output / LOSS_PLOT)


@contextlib.contextmanager
def _whole_model_loading(accelerator):
    """Load the model whole even under DeepSpeed ZeRO-3; ``deepspeed.initialize`` partitions it afterwards.

    accelerate registers its DeepSpeed config with transformers whenever DeepSpeed is on, and transformers then
    builds ZeRO-3 models inside ``zero.Init`` (parameters partitioned as they are created). The DEM initialises its
    weights in its constructor, which partitioned parameters do not allow, so that path is refused with a clear
    message and the default (``zero3_init_flag: false``) loads the model normally.
    """
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        yield
        return
    if plugin.zero3_init_flag:
        raise ValueError(
            "DeepSpeed zero3_init_flag: true is not supported (the DEM initialises its weights when built); set "
            "zero3_init_flag: false, as configs/accelerate/deepspeed_zero3.yaml does"
        )
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()


def _fill_zero_buckets(ds_config: dict, hidden: int) -> None:
    """Resolve ZeRO's "auto" bucket sizes from the LLM width, with HF's formulas (accelerate would look for a
    top-level ``config.hidden_size``, which a composite vision-language config does not have)."""
    zero = ds_config.get("zero_optimization", {})
    sizes = {
        "reduce_bucket_size": hidden * hidden,
        "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
        "stage3_param_persistence_threshold": 10 * hidden,
    }
    for key, value in sizes.items():
        if zero.get(key) == "auto":
            zero[key] = value


def sharded_engine(accelerator) -> bool:
    """True under FSDP or DeepSpeed, whose weights are not whole on every process."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _has_accelerator_device() -> bool:
    from accelerate.utils import is_mlu_available, is_npu_available, is_xpu_available

    mps = getattr(torch.backends, "mps", None)
    return (
        torch.cuda.is_available()
        or is_xpu_available()
        or is_npu_available()
        or is_mlu_available()
        or bool(mps and mps.is_available())
    )


def _filler_batch(processor) -> TrainingBatch:
    """A one-token micro-batch with nothing supervised, run by processes whose share of a short last step is empty
    (they must still take part in the gradient all-reduce). It contributes exactly zero to every gradient."""
    ids = torch.tensor([[processor.pad_token_id]])
    return TrainingBatch(ids, torch.full_like(ids, IGNORE_INDEX), torch.ones_like(ids), None, [])


def _publish(staging: Path, output: Path) -> None:
    """Move staged files into ``output`` (each ``os.replace`` is atomic), ``config.json`` last."""
    entries = sorted(staging.iterdir(), key=lambda p: (p.name == "config.json", p.name))
    for entry in entries:
        target = output / entry.name
        if entry.is_dir() and target.exists():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()


def training_image_processor(processor, aspect_ratio: str):
    """The official training preprocessing (spec 8.2) with the model processor's statistics: the high-resolution
    size (a processor saved for the "base" inference path would otherwise feed base-size images), padded to a square
    (``"pad"``) or resized and centre-cropped (``"square"``)."""
    from ..geometry import geometry_from_dict
    from ..processing.image_processing import InfLlavaImageProcessor

    settings = {**processor.image_processor.settings(), "pad_to_square": aspect_ratio == "pad"}
    return InfLlavaImageProcessor.for_geometry(geometry_from_dict(processor.geometry), mode="high_res", **settings)


def _position(record: InvalidRecord) -> tuple[str, int]:
    """Sort key: file, then line number (``where`` is ``"<file> line <n>"``)."""
    path, _, line = record.where.rpartition(" line ")
    return (path, int(line) if line.isdigit() else 0)


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"
