"""The ``spendwatch`` command and what only commands use (top layer).

``cli`` parses the command line and hands each subcommand to the layer that does the work:
``config check / explain / schema / reference`` here, ``worker``, ``produce`` and topic
ranges to :mod:`stream.kafka`, files to :mod:`stream.offline`, ``silence`` and ``alert``
to :mod:`stream.commands.notify_commands`.
"""
