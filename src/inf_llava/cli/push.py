"""Publish a saved model directory to the Hugging Face Hub: weights, config, generation config, processor,
tokenizer, chat template (chat_template.jinja, from the processor's template), train_config.yaml and a generated
model card (architecture and geometry from the config, training recipe, evaluation numbers, licence, and the
official-parity statement for converted checkpoints), in one commit.

  inf-llava push ./stage2 your-user/inf-llava-8b --license llama3 --base-model meta-llama/Meta-Llama-3-8B-Instruct
  inf-llava push ./stage2 your-user/inf-llava-8b --dry-run          # write the card, list the files, upload nothing
  inf-llava push ./stage2 your-user/inf-llava-8b --revision v2 --create-pr --commit-message "Retrained"

Evaluation numbers come from the metrics.json files of `inf-llava eval run` under --eval-results (default:
MODEL_DIR/eval-results). The token is --token, else $HF_TOKEN, else the stored `hf auth login`; the endpoint is
$HF_ENDPOINT (default the public Hub).
"""

from __future__ import annotations

import argparse

NAME = "push"
HELP = "upload a model directory to the Hugging Face Hub with a generated model card"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a directory saved by inf-llava (train, init, convert)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="target repository, NAMESPACE/NAME")
    hub = parser.add_argument_group("hub")
    hub.add_argument("--private", action="store_true", help="create the repository as private (if it is new)")
    hub.add_argument("--revision", "--branch", dest="revision", default=None, help="branch to push to (created)")
    hub.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing directly")
    hub.add_argument("--commit-message", default=None, help="commit title")
    hub.add_argument("--commit-description", default=None, help="commit (or pull request) description")
    hub.add_argument("--token", default=None, help="Hub token (default: $HF_TOKEN or the stored login)")
    hub.add_argument("--dry-run", action="store_true", help="write the card and list the files; upload nothing")
    hub.add_argument(
        "--dry-run-dir", default=None, metavar="DIR", help="where --dry-run writes (default ./hub-dry-run/NS__NAME)"
    )
    card = parser.add_argument_group("model card")
    card.add_argument("--license", default=None, help="licence id for the card metadata (default: other)")
    card.add_argument("--base-model", action="append", default=[], metavar="ID", help="base model hub id (repeatable)")
    card.add_argument("--dataset", action="append", default=[], metavar="ID", help="training dataset id (repeatable)")
    card.add_argument(
        "--eval-results",
        action="append",
        default=[],
        metavar="PATH",
        help="metrics.json of `inf-llava eval run`, or a folder searched for them (repeatable)",
    )
    card.add_argument("--description", default=None, help="the card's opening paragraph")


def run(args: argparse.Namespace) -> int:
    from ..hub.push import default_dry_run_folder, plan_push, push, write_dry_run

    plan = plan_push(
        args.model_dir,
        args.repo_id,
        license=args.license,
        base_models=args.base_model,
        datasets=args.dataset,
        eval_results=args.eval_results,
        description=args.description,
    )
    print(f"{plan.model_dir.path} -> {args.repo_id}: {len(plan.files)} files")
    for line in plan.listing():
        print(f"  {line}")
    if plan.model_dir.left_out:
        print(f"  not uploaded: {', '.join(plan.model_dir.left_out)}")
    if args.dry_run:
        folder = args.dry_run_dir or default_dry_run_folder(args.repo_id)
        written = write_dry_run(plan, folder)
        print(f"dry run: nothing uploaded; generated files in {folder}: {', '.join(p.name for p in written)}")
        return 0
    result = push(
        plan,
        token=args.token,
        private=args.private or None,
        revision=args.revision,
        create_pr=args.create_pr,
        commit_message=args.commit_message,
        commit_description=args.commit_description,
    )
    print(f"pushed: {result.commit_url}")
    if result.pr_url:
        print(f"pull request: {result.pr_url}")
    return 0
