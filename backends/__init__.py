"""Stateless compute: generators (local Hugging Face models, hosted APIs) and reward models.

Backends know a user only through the steering handed to them; they never import
``personalizer.profiles`` or the facade.
"""

__all__: list[str] = []
