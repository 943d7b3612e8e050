"""Integrations with other frameworks, each behind its own extra (imported lazily):
:mod:`personalizer.integrations.langchain` (``pip install 'personalizer[langchain]'``)."""
