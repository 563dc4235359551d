"""The shape of the project: scripts import modules only, nothing imports from tests/, every module
says what it owns, and the README's layout table lists the files that are there."""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {'train', 'test', 'demo', 'bench', 'bench_metrics', 'visualize', 'process_sysu', 'export', 'tables'}
TOP_LEVEL = sorted(f[:-3] for f in os.listdir(ROOT) if f.endswith('.py'))


def imported(name, root=ROOT):
    """The top-level names of every module `name`.py imports, anywhere in the file, and its docstring."""
    with open(os.path.join(root, name + '.py')) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return names, ast.get_docstring(tree)


@pytest.mark.parametrize('name', TOP_LEVEL)
def test_no_file_imports_a_script_or_the_tests(name):
    names, _ = imported(name)
    assert not names & SCRIPTS, f'{name}.py imports the script(s) {sorted(names & SCRIPTS)}'
    assert 'tests' not in names and 'conftest' not in names


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    (tmp_path / 'bad.py').write_text('"""x"""\ndef f():\n    from test import load_model\n    import tests.golden\n')
    assert imported('bad', str(tmp_path)) == ({'test', 'tests'}, 'x')


@pytest.mark.parametrize('name', [n for n in TOP_LEVEL if n not in SCRIPTS])
def test_every_module_opens_with_a_docstring(name):
    _, doc = imported(name)
    assert doc and len(doc.split()) >= 8, f'{name}.py needs a docstring that says what it owns'


def test_utils_stays_small():
    with open(os.path.join(ROOT, 'utils.py')) as f:
        assert len(f.read().splitlines()) < 150


def test_readme_layout_lists_the_tree():
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    section = readme[readme.index('## Project layout'):]
    section = section[:section.find('\n## ', 5)] if '\n## ' in section[5:] else section
    listed = set(re.findall(r'^\| `([^`]+)`', section, re.M)) | set(re.findall(r', `([^`]+)` \|', section))
    files = {f for f in os.listdir(ROOT) if f.endswith('.py')} | {'README.md', 'tests/', 'requirements.txt'}
    assert files <= listed, f'missing from the README layout: {sorted(files - listed)}'
    missing = [f for f in listed if not os.path.exists(os.path.join(ROOT, f.rstrip('/')))]
    assert not missing, f'the README layout lists files that do not exist: {missing}'
