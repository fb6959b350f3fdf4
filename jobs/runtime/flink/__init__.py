"""The PyFlink runtime (`--engine flink`): the join core inside a KeyedProcessFunction (`functions`), the
job graphs on Kafka (`job`, `kafka`) and on files (`replay`), and the Flink environment (`env`)."""
