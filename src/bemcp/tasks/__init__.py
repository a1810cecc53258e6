"""MCP tasks: long-running calls that outlive their request, kept in a store that outlives the process."""
