"""`python -m executor`: one executor process, consuming the shared queue until SIGTERM."""

from colsum import logs, store
from colsum.settings import Settings
from executor.storage import storages
from executor.worker import Worker


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings)
    task_store = store.TaskStore(store.connect(settings.redis_url), settings.redis_prefix)
    Worker(settings, task_store, storages(settings)).run()


if __name__ == "__main__":
    main()
