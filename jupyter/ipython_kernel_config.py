# IPython kernel settings for the project's environment: `make venv` installs this file as
# .venv/etc/ipython/ipython_kernel_config.py, which every kernel of that environment reads (papermill's, Lab's).
import logging


class _QuietOnLoopback(logging.Filter):
    """Drop ipykernel's "running over TCP without encryption" warning for a kernel bound to loopback (papermill,
    `make lab`): only local processes reach it, and their messages are signed. Elsewhere the warning stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ipykernel.kernelapp import IPKernelApp

        loopback = IPKernelApp.initialized() and IPKernelApp.instance().ip in ("127.0.0.1", "localhost", "::1")
        return not (loopback and record.getMessage().startswith("Kernel is running over TCP without encryption"))


c = get_config()  # noqa: F821 (provided by the config loader)
c.IPKernelApp.logging_config = {
    "filters": {"quiet_on_loopback": {"()": _QuietOnLoopback}},
    "handlers": {"console": {"filters": ["quiet_on_loopback"]}},
}
