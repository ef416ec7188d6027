"""I/O only: feeds, Kafka, stores and alert channels. No enrichment logic lives here."""
