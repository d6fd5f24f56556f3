"""Background workers, asyncio tasks in the server process by default (``threadline serve``)."""
