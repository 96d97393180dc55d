"""The Kafka adapter: the worker and everything that reads or writes a topic.

Intake, the worker's stages and their state in Faust tables, the alert outbox, hot
reload, ``produce``, topic-range replay, the silences topic and the notify agent.
:mod:`stream.kafka.connection` turns the connection settings into client arguments.
Detection is never here: the stages call :mod:`stream.core`.
"""
