"""Send a built edition: `python send.py dist/2020-W41 --recipients list.csv`.

The same command as `digest send`; `python send.py --help` explains it.
"""

from digest.send_cli import main

if __name__ == "__main__":
    main()
