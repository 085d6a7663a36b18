"""``python -m featurekit``: the command line, also as ``torchrun -m featurekit fit ...``."""

from featurekit.cli import main

if __name__ == "__main__":
    main()
