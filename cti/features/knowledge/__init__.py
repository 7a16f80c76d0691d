"""The knowledge base: articles (zh, en) searchable from the agent page, and knowledge gaps."""
