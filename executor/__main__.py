"""`python -m executor`: one executor process, consuming the shared queue until SIGTERM."""

import logging
import sys

from colsum import logs
from colsum.errors import BrokerMisconfigured
from colsum.settings import Settings
from colsum.store import TaskStore
from executor import evens, fastsum, parts
from executor.storage import storages
from executor.worker import Worker


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings)
    task_store = TaskStore.from_settings(settings)
    fastsum.warm()  # numba compiles the kernels (or loads them) now, not in the first task
    evens.warm()
    parts.warm()
    try:
        worker = Worker(settings, task_store, storages(settings))
        worker.install_signal_handlers()
        worker.run()
    except BrokerMisconfigured as error:
        logging.getLogger("executor").error("%s", error)
        sys.exit(2)


if __name__ == "__main__":
    main()
