"""Web chat, the visitor side: the widget script, its endpoints and websocket, the demo shop page
(``routes``, ``live``, ``ratelimit``, ``static/``); and the agent API additions (``agent_api``: typing, read
receipts). The package's setup hook mounts them through its host."""
