"""The GitHub workflows (.github/workflows): actionlint over them, and the project's own rules that a linter cannot
know: which stacks they cover, least-privilege permissions, secrets only through ``${{ secrets.* }}``, the
passphrase for self-managed backends, the policy pack on every preview and update, and pinned actions."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
SETUP_ACTION = REPO / ".github" / "actions" / "setup" / "action.yml"
PREVIEW = WORKFLOWS / "preview.yml"
DEPLOY = WORKFLOWS / "deploy.yml"


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps_using(workflow: dict[str, Any], action: str) -> list[tuple[str, dict[str, Any]]]:
    """(job id, step) of every step whose ``uses`` is ``action`` at any version."""
    return [
        (job_id, step)
        for job_id, job in workflow["jobs"].items()
        for step in job.get("steps", [])
        if str(step.get("uses", "")).split("@")[0] == action
    ]


def actionlint_binary() -> str | None:
    """actionlint from the test extra (installed beside this interpreter) or from PATH."""
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.exists() else shutil.which("actionlint")


def test_actionlint() -> None:
    binary = actionlint_binary()
    if binary is None:
        pytest.skip("needs actionlint (pip install -e '.[test]' installs it)")
    result = subprocess.run([binary, "-no-color", "-oneline"], capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The linter really runs: a workflow with a typo'd input and an injectable expression fails."""
    binary = actionlint_binary()
    if binary is None:
        pytest.skip("needs actionlint (pip install -e '.[test]' installs it)")
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: pulumi/actions@v7\n        with:\n          commnd: preview\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    result = subprocess.run([binary, "-no-color", "-oneline", str(bad)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert 'input "commnd" is not defined' in result.stdout and "potentially untrusted" in result.stdout


def test_stacks_are_the_same_everywhere_and_exist() -> None:
    preview, deploy = load(PREVIEW), load(DEPLOY)
    previewed = preview["jobs"]["preview"]["strategy"]["matrix"]["stack"]
    choices = deploy["on"]["workflow_dispatch"]["inputs"]["stack"]["options"]
    on_push = re.search(r"\|\| '(\[.*?\])'", deploy["jobs"]["up"]["strategy"]["matrix"]["stack"])
    assert on_push is not None, "deploy's matrix lists every stack for pushes"
    assert "zhy" in previewed and previewed == choices == yaml.safe_load(on_push.group(1))
    for stack in previewed:
        assert (REPO / f"Pulumi.{stack}.yaml").exists(), f"Pulumi.{stack}.yaml is missing"


def test_triggers() -> None:
    assert load(PREVIEW)["on"] == {"pull_request": {"branches": ["main"]}}
    deploy = load(DEPLOY)
    assert set(deploy["on"]) == {"workflow_dispatch", "push"} and deploy["on"]["push"] == {"branches": ["main"]}
    assert "WGMESH_DEPLOY_ON_PUSH == 'true'" in deploy["jobs"]["test"]["if"], "pushes deploy only when asked to"
    assert deploy["jobs"]["up"]["concurrency"]["cancel-in-progress"] is False, "an update is never cancelled half-way"


def test_least_privilege_permissions() -> None:
    expected = {
        (PREVIEW, "test"): None,
        (PREVIEW, "preview"): None,  # no cloud role, no comment: nothing a pull request's code could use
        (DEPLOY, "test"): None,
        (DEPLOY, "up"): {"contents": "read", "id-token": "write"},
    }
    for path in (PREVIEW, DEPLOY):
        workflow = load(path)
        assert workflow["permissions"] == {"contents": "read"}, f"{path.name}: read-only by default"
        for job_id, job in workflow["jobs"].items():
            assert job.get("permissions") == expected[(path, job_id)], f"{path.name}: {job_id}"


def test_pulumi_steps() -> None:
    commands = {}
    assert steps_using(load(PREVIEW), "pulumi/actions") == [], "a pull request's code never reaches the stack's state"
    for path in (DEPLOY,):
        steps = steps_using(load(path), "pulumi/actions")
        assert steps, f"{path.name} runs pulumi/actions"
        for _job, step in steps:
            options, env = step["with"], step["env"]
            commands[path.name] = options["command"]
            assert options["policyPacks"] == "policy", "every preview and update runs the policy pack"
            assert options["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}", "the backend is configurable"
            assert "matrix.stack" in options["stack-name"]
            assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
            assert env["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
            assert options["suppress-outputs"] is True
    assert commands == {"deploy.yml": "${{ inputs.command || 'up' }}"}
    assert load(DEPLOY)["on"]["workflow_dispatch"]["inputs"]["command"]["options"] == ["preview", "up"]


def test_aws_credentials_by_oidc_or_secrets() -> None:
    for path in (DEPLOY,):
        steps = [step for _job, step in steps_using(load(path), "aws-actions/configure-aws-credentials")]
        by_condition = {step["if"]: step["with"] for step in steps}
        assert by_condition["vars.AWS_ROLE_ARN != ''"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
        keys = by_condition["vars.AWS_ROLE_ARN == ''"]
        assert keys["aws-access-key-id"] == "${{ secrets.AWS_ACCESS_KEY_ID }}"
        assert keys["aws-secret-access-key"] == "${{ secrets.AWS_SECRET_ACCESS_KEY }}"


@pytest.mark.parametrize(
    ("region", "override", "audience"),
    [
        ("cn-northwest-1", "", "sts.amazonaws.com.cn"),
        ("cn-north-1", "", "sts.amazonaws.com.cn"),
        ("eu-west-1", "", "sts.amazonaws.com"),
        ("us-gov-west-1", "", "sts.amazonaws.com"),
        ("cn-north-1", "sts.example.internal", "sts.example.internal"),
    ],
)
def test_oidc_audience_follows_the_regions_partition(tmp_path: Path, region: str, override: str, audience: str) -> None:
    """AWS China's STS only accepts tokens for sts.amazonaws.com.cn: the role step takes the audience the step before
    it computes from the region (run here as the runner would run it)."""
    for path in (DEPLOY,):
        steps = [step for job in load(path)["jobs"].values() for step in job.get("steps", [])]
        (pick,) = [step for step in steps if step.get("id") == "partition"]
        (role,) = [
            step for _job, step in steps_using(load(path), "aws-actions/configure-aws-credentials") if "role-to-assume" in step["with"]
        ]
        assert role["with"]["audience"] == "${{ steps.partition.outputs.audience }}"
        assert steps.index(pick) < steps.index(role) and pick["if"] == role["if"]
        assert pick["env"] == {"REGION": "${{ vars.AWS_REGION || 'cn-northwest-1' }}", "AUDIENCE": "${{ vars.AWS_OIDC_AUDIENCE }}"}
        outputs = tmp_path / f"{path.stem}-{region}"
        env = {"PATH": "/usr/bin:/bin", "REGION": region, "AUDIENCE": override, "GITHUB_OUTPUT": str(outputs)}
        subprocess.run(["bash", "-e", "-c", pick["run"]], env=env, check=True, timeout=30)
        assert outputs.read_text() == f"audience={audience}\n", path.name


def test_secrets_only_through_expressions() -> None:
    for path in [*WORKFLOWS.glob("*.yml"), SETUP_ACTION]:
        text = path.read_text()
        outside = re.sub(r"\$\{\{.*?\}\}", "", text)
        assert "secrets." not in outside, f"{path.name}: a secret referenced outside ${{{{ }}}}"
        for expression in re.findall(r"\$\{\{(.*?)\}\}", text):
            if "secrets" in expression:
                assert re.fullmatch(r"\s*secrets\.[A-Z_]+\s*", expression), f"{path.name}: {expression!r} is not a plain secret reference"
        for pattern in (r"AKIA[0-9A-Z]{16}", r"pul-[0-9a-f]{40}", r"-----BEGIN", r"gh[pousr]_[A-Za-z0-9]{30,}"):
            assert not re.search(pattern, text), f"{path.name}: something that looks like a credential"


def test_actions_are_pinned() -> None:
    for path in [*WORKFLOWS.glob("*.yml"), SETUP_ACTION]:
        for uses in re.findall(r"uses:\s*(\S+)", path.read_text()):
            if uses.startswith("./"):
                assert (REPO / uses / "action.yml").exists(), uses
                continue
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", uses), f"{path.name}: {uses} is not pinned to a release"


def test_setup_action_prepares_what_pulumi_expects() -> None:
    """The virtualenvs the composite action creates are the ones Pulumi.yaml and PulumiPolicy.yaml name."""
    text = SETUP_ACTION.read_text()
    program = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["runtime"]["options"]["virtualenv"]
    pack = yaml.safe_load((REPO / "policy" / "PulumiPolicy.yaml").read_text())["runtime"]["options"]["virtualenv"]
    assert f"python -m venv {program}\n" in text and f"python -m venv policy/{pack}\n" in text
    assert "--requirement policy/requirements.txt" in text
    for path in (PREVIEW, DEPLOY):
        for job in load(path)["jobs"].values():
            uses = [step.get("uses") for step in job["steps"]]
            if any(str(item).startswith("pulumi/actions@") for item in uses):
                assert "./.github/actions/setup" in uses


def pull_request_triggered(workflow: dict[str, Any]) -> bool:
    triggers = workflow["on"]
    names = [triggers] if isinstance(triggers, str) else list(triggers)
    return any(name in ("pull_request", "pull_request_target", "workflow_run") for name in names)


def secrets_of(node: Any) -> set[str]:
    """Every secret a job can read: ``secrets.NAME`` (or ``secrets['NAME']``) anywhere in it, ``secrets: inherit``."""
    text = yaml.safe_dump(node)
    found = set(re.findall(r"secrets\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*'([^']+)'\s*\])", text))
    names = {a or b for a, b in found}
    if re.search(r"\bsecrets\b(?!\s*[.\[])", text) or (isinstance(node, dict) and node.get("secrets") == "inherit"):
        names.add("*")  # the whole secrets context, or every secret passed on to a reusable workflow
    return names


# Deploy-grade secrets: each decrypts the stack (its state and config hold the SSH key that logs in to every peer)
# or writes to the cloud.
STACK_SECRETS = {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_no_secret_and_no_cloud_credential_reaches_a_pull_request_job() -> None:
    """A pull request from a branch of the repository runs its own code with whatever its jobs get: no secret at all,
    no OIDC token (a role to assume), no AWS credentials step, no job in an environment that holds secrets."""
    checked = 0
    for path in WORKFLOWS.glob("*.yml"):
        workflow = load(path)
        if not pull_request_triggered(workflow):
            continue
        assert "secrets" not in secrets_of({key: value for key, value in workflow.items() if key != "jobs"}), path.name
        assert (workflow.get("permissions") or {}).get("id-token") != "write", path.name
        for job_id, job in workflow["jobs"].items():
            checked += 1
            assert secrets_of(job) == set(), f"{path.name}: job {job_id} reads secrets {sorted(secrets_of(job))}"
            assert (job.get("permissions") or {}).get("id-token") != "write", f"{path.name}: {job_id} may assume a cloud role"
            assert "environment" not in job, f"{path.name}: {job_id} runs in an environment (its secrets)"
            assert steps_using({"jobs": {job_id: job}}, "aws-actions/configure-aws-credentials") == [], f"{path.name}: {job_id}"
            assert steps_using({"jobs": {job_id: job}}, "pulumi/actions") == [], f"{path.name}: {job_id} reaches the stack"
    assert checked >= 2


def test_the_check_above_catches_a_secret_in_a_pull_request_job() -> None:
    """The check is not vacuous: each way of handing a secret to a job is found."""
    for job in (
        {"steps": [{"env": {"P": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"}}]},
        {"steps": [{"with": {"k": "${{ secrets['AWS_SECRET_ACCESS_KEY'] }}"}}]},
        {"uses": "./.github/workflows/x.yml", "secrets": "inherit"},
        {"steps": [{"run": "echo '${{ toJSON(secrets) }}'"}]},
    ):
        assert secrets_of(job), job


def test_stack_secrets_reach_only_the_deploy_job_in_its_protected_environment() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        workflow = load(path)
        for job_id, job in workflow["jobs"].items():
            used = secrets_of(job) & (STACK_SECRETS | {"*"})
            if used:
                assert (path, job_id) == (DEPLOY, "up"), f"{path.name}: {job_id} reads {sorted(used)}"
                assert job["environment"] == "${{ matrix.stack }}", "the stack's environment holds them"
                assert not pull_request_triggered(workflow)
    assert secrets_of(load(DEPLOY)["jobs"]["up"]) >= {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN"}
