"""Many workers on one study, scaled down from benchmarks/storage_load.py (which gives the
full figures in docs/reliability.md): the stand-in study, no training, mixed ``--jobs``
launchers and separate processes, exactly N finished at the end."""

from storage_load import commands, run_load

from hpsearch.storage import POOL_SIZE

TRIALS = 150


def test_twelve_workers_on_postgresql_finish_exactly_n_within_the_connection_budget(postgres_server, tmp_path):
    url = postgres_server.new_database("load")
    result = run_load(url, workers=12, trials=TRIALS, folder=tmp_path, jobs=4, server=postgres_server)
    print(result.summary())
    assert (result.finished, result.running, result.duplicate_numbers, result.error_lines) == (TRIALS, 0, 0, [])
    cmds = commands(url, 12, TRIALS, 4, 60, "tpe")
    launchers = sum("--jobs" in cmd for cmd in cmds)
    assert (len(cmds), launchers) == (9, 1)  # 1 launcher of 4 workers and 8 separate workers
    # A worker holds at most POOL_SIZE connections, and so does a launcher (its own storage);
    # the harness's count adds one.
    assert 0 < result.max_connections <= POOL_SIZE * (12 + launchers) + 1


def test_six_workers_on_sqlite_while_the_dashboard_is_polled(tmp_path):
    result = run_load(
        f"sqlite:///{tmp_path / 'hpsearch.db'}", workers=6, trials=60, folder=tmp_path, jobs=3, dashboard=True
    )
    print(result.summary())
    assert (result.finished, result.running, result.duplicate_numbers) == (60, 0, 0), result.summary()
    assert not [line for line in result.error_lines if "locked" in line] and result.error_lines == []
    assert result.polls_ok > 0 and result.polls_failed == 0
