"""`python -m tests.cli_with_test_models ARGS...`: the adbench command with the tests' models and tasks registered.

For launchers that run a module, not `python -c` (torchrun, accelerate launch).
"""

import sys

from adbench import registry
from adbench.cli import main

registry.register_model("slow", "tests.helpers:SlowModel", "test model")
registry.register_task("mini-all", "tests.helpers:mini_all_task", "test task")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
