"""`digest preview`: a local server showing every edition as subscribers will see it.

It runs the same stages as `digest build` (`plan`, `render_edition`) in memory, never
writes into dist/, rebuilds when entries, templates or digest.toml change, and pushes
the new version to open pages over server-sent events.

    state.py    the last good build, the current problems, a version that moves
    watcher.py  watchfiles threads that call `Preview.rebuild` on every save
    pages.py    the index and edition pages, meters, the email frame
    server.py   the HTTP routes (ThreadingHTTPServer) and start/stop
    command.py  the click command
"""
