"""The ``facedeblur`` subcommands that are tools around the model: ``make-kernels``,
``convert-vgg``, ``make-labels``, ``build-tfds``, ``params``. One module per subcommand,
each with ``build_parser()`` and ``main(argv) -> exit code``.
"""
