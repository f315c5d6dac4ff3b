"""The executor: consumes tasks from RabbitMQ, sums their CSV, writes the result to Redis."""
