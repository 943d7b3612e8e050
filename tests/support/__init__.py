"""What the tests share that is not a test: tiny models, the local servers, child-process workers
and the rows the store tests write. ``pyproject.toml`` puts ``tests/`` on pytest's ``pythonpath``,
so a test imports ``from support import tiny`` or ``from support.rows import pref``.

* :mod:`support.tiny` -- tiny transformers models and a tokenizer built locally;
* :mod:`support.provider_server` -- a local server speaking the OpenAI and Anthropic wire formats;
* :mod:`support.pg_server` -- a throw-away PostgreSQL cluster;
* :mod:`support.workers`, :mod:`support.fault_workers` -- child processes of the concurrency and
  fault tests (run as scripts by file path);
* :mod:`support.rows` -- preferences to store and a count of a user's rows in every table.
"""
