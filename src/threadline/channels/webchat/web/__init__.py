"""Web chat, the visitor side: the widget script, its endpoints and websocket, the demo shop page
(``routes``, ``live``, ``static/``; the rate limiter is ``domain/ratelimit.py``); and the agent API additions (``agent_api``: typing, read
receipts). The package's setup hook mounts them through its host."""
