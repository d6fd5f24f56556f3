"""HTTP and websocket interfaces: the REST API, provider hooks, the live stream and the agent desk."""
