"""`bemcp stress`: an adaptive, phased stress tester for any MCP server."""
