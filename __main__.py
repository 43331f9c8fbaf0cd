"""Pulumi program: the environment spec in this stack's config -> the whole mesh.

`pulumi up` runs this file. It builds the same plan `meshboot render` writes
and hands it to the Pulumi adapter. Nothing happens at import time of the
packages it uses; resources are created only here.
"""

from pathlib import Path

import pulumi

from clusters.errors import SpecError
from clusters.pulumi_config import load_spec_from_pulumi
from stacks.build import build_plan, with_plan_problems
from stacks.pulumi_program import ProgramError, build_environment


def main() -> None:
    try:
        spec, source = load_spec_from_pulumi()
        plan = build_plan(spec, source=source, base_dir=Path(__file__).resolve().parent)
        build_environment(plan)
    except SpecError as err:
        raise pulumi.RunError(with_plan_problems(err).text()) from None
    except ProgramError as err:
        raise pulumi.RunError(str(err)) from None


main()
