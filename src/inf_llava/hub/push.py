"""Publish a saved model directory to a Hugging Face Hub repository in one commit (``inf-llava push``).

The commit holds the directory's model files (:data:`~.model_dir.PUBLISHED`: weights, config, generation config,
processor, tokenizer, ``train_config.yaml``, ``conversion_report.json``), ``chat_template.jinja`` generated from
the processor's named template, and the generated model card. ``dry_run`` writes the generated files to a folder
and lists everything without contacting the Hub. Endpoint and token follow ``huggingface_hub`` (``HF_ENDPOINT``,
``HF_TOKEN`` or the stored login, unless ``token`` is given).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InfLlavaError
from .card import CardOptions, build_card, load_eval_metrics
from .model_dir import CARD_FILE, CHAT_TEMPLATE_FILE, EVAL_RESULTS_DIR, ModelDir, inspect_model_dir


class HubError(InfLlavaError, RuntimeError):
    """The Hub refused or failed a request (the message names the repository and the HTTP status)."""


@dataclass
class PushPlan:
    """What one push uploads: ``files`` maps the path in the repository to a local file or generated text."""

    model_dir: ModelDir
    repo_id: str
    files: dict[str, Path | str] = field(default_factory=dict)

    def listing(self) -> list[str]:
        """One line per uploaded file (path in the repository, size, where it comes from)."""
        lines = []
        for name, source in sorted(self.files.items()):
            if isinstance(source, Path):
                lines.append(f"{name}  {source.stat().st_size:,} bytes")
            else:
                lines.append(f"{name}  {len(source.encode('utf-8')):,} bytes (generated)")
        return lines


def plan_push(
    model_dir: str | Path,
    repo_id: str,
    *,
    license: str | None = None,
    base_models: Sequence[str] = (),
    datasets: Sequence[str] = (),
    eval_results: Sequence[str | Path] = (),
    description: str | None = None,
) -> PushPlan:
    """Check the directory and build the file set, card included (reads configs and weight headers only)."""
    from ..processing.processor import InfLlavaProcessor

    if "/" not in repo_id or repo_id.count("/") > 1 or not all(repo_id.split("/")):
        raise ValueError(f"repository id {repo_id!r} must be NAMESPACE/NAME (e.g. your-user/inf-llava-7b)")
    checked = inspect_model_dir(model_dir)
    metrics_paths = list(eval_results)
    if not metrics_paths and (checked.path / EVAL_RESULTS_DIR).is_dir():
        metrics_paths = [checked.path / EVAL_RESULTS_DIR]
    options = CardOptions(
        repo_id=repo_id,
        base_models=base_models,
        datasets=datasets,
        eval_metrics=load_eval_metrics(metrics_paths) if metrics_paths else [],
        description=description,
    )
    if license:
        options.license = license
    plan = PushPlan(checked, repo_id, {path.name: path for path in checked.files})
    # the processor's named template as Jinja (what vLLM and tokenizer.apply_chat_template render), regenerated so
    # that a stale or hand-edited file in the directory cannot disagree with the template the model was trained with
    plan.files[CHAT_TEMPLATE_FILE] = InfLlavaProcessor.from_pretrained(str(checked.path)).chat_template
    plan.files[CARD_FILE] = str(build_card(checked, options))
    return plan


def write_dry_run(plan: PushPlan, folder: str | Path) -> list[Path]:
    """Write the generated files (card, chat template) of ``plan`` into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, source in plan.files.items():
        if isinstance(source, str):
            (folder / name).write_text(source, encoding="utf-8")
            written.append(folder / name)
    return written


@dataclass(frozen=True)
class PushResult:
    repo_url: str
    commit_url: str
    pr_url: str | None


def push(
    plan: PushPlan,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
) -> PushResult:
    """Create the repository if needed (and the branch ``revision``), then upload ``plan`` in one commit
    (a pull request with ``create_pr``)."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub import constants as hub_constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if hub_constants.HF_HUB_OFFLINE:
        raise HubError("HF_HUB_OFFLINE is set: unset it to push (or use --dry-run)")
    api = HfApi(token=token)
    operations = [
        CommitOperationAdd(
            path_in_repo=name, path_or_fileobj=str(source) if isinstance(source, Path) else source.encode()
        )
        for name, source in sorted(plan.files.items())
    ]
    message = commit_message or f"Upload INF-LLaVA model ({plan.model_dir.path.name}) with inf-llava"
    try:
        repo_url = api.create_repo(plan.repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main" and not revision.startswith("refs/pr/"):
            try:
                api.create_branch(plan.repo_id, branch=revision, exist_ok=True)
            except HfHubHTTPError as exc:  # a pull request to someone else's repo: the branch must exist already
                if not (create_pr and exc.response is not None and exc.response.status_code == 403):
                    raise
        commit = api.create_commit(
            plan.repo_id,
            operations,
            commit_message=message,
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        detail = " ".join(str(exc).split())[:300]
        hint = " (check the token: --token or HF_TOKEN)" if status in (401, 403) else ""
        raise HubError(f"pushing to {plan.repo_id} failed: HTTP {status}{hint}: {detail}") from None
    except OfflineModeIsEnabled as exc:
        raise HubError(f"pushing to {plan.repo_id} failed: {exc}") from None
    return PushResult(str(repo_url), commit.commit_url, commit.pr_url)


def default_dry_run_folder(repo_id: str) -> Path:
    return Path(os.getcwd()) / "hub-dry-run" / repo_id.replace("/", "__")


__all__ = ["HubError", "PushPlan", "PushResult", "default_dry_run_folder", "plan_push", "push", "write_dry_run"]
