"""The lab's SSH executor for the tests: :mod:`lab.executor` (where it lives, so that product commands can use it
without importing from ``tests/``). See that module for what it does.
"""

from lab.executor import COMMAND_TYPE, CommandFailed, LabExecutor, SshResult, run_ssh, widen_thread_pool

__all__ = ["COMMAND_TYPE", "CommandFailed", "LabExecutor", "SshResult", "run_ssh", "widen_thread_pool"]
