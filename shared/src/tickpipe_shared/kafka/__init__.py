"""The Kafka runtime shared by every stage: topics, producer, consumer loop and commit protocol."""
