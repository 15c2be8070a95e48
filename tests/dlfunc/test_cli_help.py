"""Every command and subcommand of both CLIs prints its help (argparse help strings are %-formatted)."""
import pytest

from autograder import cli as autograder_cli
from dlfunc import cli as dlfunc_cli

AUTOGRADER = [[], ["list"], ["check"], ["grade"], ["grade-all"], ["release"], ["validate"]]
DLFUNC = [[], ["train"], ["evaluate"], ["anomaly"], ["finetune"], ["embed"]]


@pytest.mark.parametrize("main,argv", [(autograder_cli.main, a) for a in AUTOGRADER]
                         + [(dlfunc_cli.main, a) for a in DLFUNC],
                         ids=[" ".join(["autograder", *a]) for a in AUTOGRADER]
                         + [" ".join(["dlfunc", *a]) for a in DLFUNC])
def test_help(main, argv, capsys):
  with pytest.raises(SystemExit) as info:
    main([*argv, "--help"])
  assert info.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith("usage:"), out[:200]
