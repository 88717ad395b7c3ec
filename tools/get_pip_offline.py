"""Stand-in for ansible-test's downloaded pip bootstrap script.

ansible-test fetches get-pip.py from a host this CI cannot reach.  This
script does the same job with the interpreter's own ensurepip and then
installs the pip version ansible-test asked for from the package index.
Arguments are those ansible-test passes to get-pip.py.
"""

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install"]
                      + [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY])
