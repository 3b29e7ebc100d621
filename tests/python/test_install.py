"""Installing allcores: on a system other than Linux the import fails at once with one sentence
saying so; the README says how to install it and what it needs."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("platform", ["darwin", "win32", "freebsd14"])
def test_import_on_another_system_says_linux_only(platform):
    code = ("import sys; sys.platform = %r\n"
            "try:\n"
            "    import allcores\n"
            "except ImportError as exc:\n"
            "    print('ImportError:', exc)\n"
            "else:\n"
            "    print('imported')\n" % platform)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60).stdout.strip()
    assert out.startswith("ImportError: allcores runs only on Linux"), out
    assert platform in out and "kernel 5.3" in out
    assert out.count(". ") == 0 and "\n" not in out  # one sentence


def test_import_on_linux_works():
    out = subprocess.run([sys.executable, "-c", "import allcores; print(allcores.Pool.__name__)"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "Pool", out.stderr


def test_readme_says_how_to_install_and_what_it_needs():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    for needed in ("pip install .", "python -m build", ".whl", "Linux", "5.3", "memfd", "futex",
                   "pidfd", "3.11", "3.15", "free-threaded", "C compiler"):
        assert needed in section, needed
