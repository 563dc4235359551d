"""The shape of the repository: the top level holds the scripts and the method modules, everything
else lives in the ifalnet/ package; imports point one way; names say what a file holds and shadow
nothing; the maps (ifalnet/__init__.py, tests/__init__.py, the README's layout table) match the tree;
every link of the README, the CHANGELOG and docs/ resolves."""
import ast
import importlib.metadata
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'ifalnet'
# The scripts a user runs, and the modules a researcher edits to change the method (recipe.py is the
# training step). Nothing else of Python sits at the top level.
SCRIPTS = {'train', 'test', 'process_sysu', 'synthetic', 'demo', 'visualize', 'export', 'tables', 'bench'}
METHOD = {'model', 'resnet', 'loss', 'data_loader', 'data_manager', 'eval_metrics', 'utils', 'recipe'}
# torch.hub's entry point: torch.hub.load(REPO_OR_DIR, 'ifalnet', ...) imports hubconf.py from the
# repository's root, so it cannot live in the package.
ENTRY_POINTS = {'hubconf'}
TOP_LEVEL = sorted(f[:-3] for f in os.listdir(ROOT) if f.endswith('.py'))
PACKAGE_MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, PACKAGE)) if f.endswith('.py')
                         if f != '__init__.py')
# Names of popular packages a module here must not take even inside the package: `coverage` (which
# pytest-cov imports, and a top-level coverage.py once shadowed), PyPI's `runs`, `utils`, `tables`
# (PyTables) and dask's `distributed`. (utils.py and tables.py keep the names of the release and of the
# issue that named the scripts; nothing here imports those packages.)
POPULAR = {'coverage', 'runs', 'distributed', 'attention', 'evaluation', 'training', 'features'}


def source(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def imports(path):
    """The modules `path` imports anywhere in the file (absolute imports, dotted as written: 'ifalnet.scoring',
    'model'; `from ifalnet import scoring` counts as 'ifalnet.scoring'), and its docstring."""
    tree = ast.parse(source(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == PACKAGE:
                names |= {f'{PACKAGE}.{alias.name}' for alias in node.names}
    return names, ast.get_docstring(tree)


def roots(names):
    return {name.split('.')[0] for name in names}


PYTHON_FILES = [f'{m}.py' for m in TOP_LEVEL] + [f'{PACKAGE}/{m}.py' for m in PACKAGE_MODULES]


def test_the_top_level_holds_scripts_and_method_modules_only():
    others = set(TOP_LEVEL) - SCRIPTS - METHOD - ENTRY_POINTS
    assert not others, f'top-level modules that are neither scripts nor the method: {sorted(others)} (move them to {PACKAGE}/)'
    assert SCRIPTS | METHOD | ENTRY_POINTS <= set(TOP_LEVEL)


@pytest.mark.parametrize('path', PYTHON_FILES)
def test_imports_point_one_way(path):
    names, _ = imports(path)
    top = roots(names)
    assert not top & (SCRIPTS | ENTRY_POINTS), f'{path} imports the script(s) {sorted(top & (SCRIPTS | ENTRY_POINTS))}'
    assert 'tests' not in top and 'conftest' not in top, f'{path} imports from tests/'
    if path.startswith(PACKAGE + '/'):
        assert 'recipe' not in top, f'{path}: the package does not import the training step (recipe.py)'
    if os.path.splitext(path)[0] in METHOD - {'recipe'}:
        assert PACKAGE not in top, f'{path}: a method module imports only other method modules and third-party code'


def test_the_import_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], 'ROOT', str(tmp_path))
    (tmp_path / 'bad.py').write_text('"""x"""\ndef f():\n    from test import load_model\n    import tests.golden\n'
                                     '    from ifalnet import scoring\n')
    assert imports('bad.py') == ({'test', 'tests.golden', 'ifalnet', 'ifalnet.scoring'}, 'x')


@pytest.mark.parametrize('path', [p for p in PYTHON_FILES if os.path.splitext(p)[0] not in SCRIPTS])
def test_every_module_opens_with_a_docstring(path):
    _, doc = imports(path)
    assert doc and len(doc.split()) >= 8, f'{path} needs a docstring that says what it owns'


def test_the_package_map_imports_nothing_and_lists_the_package():
    tree = ast.parse(source(f'{PACKAGE}/__init__.py'))
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), 'ifalnet/__init__.py: a docstring only'
    listed = re.findall(r'^    (\w+)\.py ', ast.get_docstring(tree), re.M)
    assert sorted(listed) == PACKAGE_MODULES, 'the map in ifalnet/__init__.py and the package differ'


def stems():
    return [(m, m) for m in TOP_LEVEL] + [(f'{PACKAGE}/{m}', m) for m in PACKAGE_MODULES]


def test_no_two_names_differ_by_a_prefix_or_a_suffix():
    """export.py/exporting.py, tables.py/result_tables.py, bench.py/bench_metrics.py and train.py/training.py
    read as one file; no name is another's beginning or end (data_loader/data_manager share neither)."""
    clashes = [(a, b) for a, x in stems() for b, y in stems() if a != b and (y.startswith(x) or y.endswith(x))]
    assert not clashes, f'names that differ by a prefix or a suffix: {clashes}'


def test_no_module_shadows_an_installed_or_a_popular_package():
    installed = set(importlib.metadata.packages_distributions()) | set(sys.stdlib_module_names)
    top = [m for m in TOP_LEVEL + [PACKAGE] if m in installed | {'coverage'}]
    assert not top, f'top-level modules that shadow an installed or standard module: {top}'
    inside = [m for m in PACKAGE_MODULES if m in installed | POPULAR or re.fullmatch(r'test_\w*|\w*_test', m)]
    assert not inside, f'package modules named like a popular package or a test file: {inside}'


def test_utils_stays_small():
    assert len(source('utils.py').splitlines()) < 150


def test_the_tests_map_lists_every_test_file():
    listed = set(re.findall(r'\b(test_\w+\.py)\b', source(os.path.join('tests', '__init__.py'))))
    files = {f for f in os.listdir(os.path.join(ROOT, 'tests')) if re.fullmatch(r'test_\w+\.py', f)}
    assert listed == files, f'tests/__init__.py lists {sorted(listed - files)} that do not exist and not {sorted(files - listed)}'


def layout_rows():
    readme = source('README.md')
    section = readme[readme.index('## Project layout'):]
    section = section[:section.index('\n## ', 5)] if '\n## ' in section[5:] else section
    return re.findall(r'^\| `([^`]+)` \|', section, re.M)


def test_the_readme_layout_table_lists_the_tree():
    rows = layout_rows()
    assert len(rows) == len(set(rows)), 'the README layout lists a file twice'
    files = set(PYTHON_FILES) | {f'{PACKAGE}/__init__.py', 'README.md', 'CHANGELOG.md', 'docs/', 'tests/',
                                 'requirements.txt', '.ci/run'}
    files |= {f for f in os.listdir(ROOT) if re.fullmatch(r'requirements[\w-]*\.txt', f)}
    assert files <= set(rows), f'missing from the README layout: {sorted(files - set(rows))}'
    missing = [f for f in rows if not os.path.exists(os.path.join(ROOT, f.rstrip('/')))]
    assert not missing, f'the README layout lists files that do not exist: {missing}'


def slug(heading):
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r'[`*_]', lambda m: '_' if m.group() == '_' else '', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(path):
    with open(path) as f:
        text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
    return {slug(h) for h in re.findall(r'^#{1,6} (.+)$', text, re.M)}


MARKDOWN = ['README.md', 'CHANGELOG.md'] + sorted(os.path.join('docs', f) for f in os.listdir(os.path.join(ROOT, 'docs'))
                                                if f.endswith('.md'))


@pytest.mark.parametrize('page', MARKDOWN)
def test_every_link_resolves(page):
    text = re.sub(r'```.*?```', '', source(page), flags=re.S)
    broken = []
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+:', target):
            continue   # a web address
        path, _, anchor = target.partition('#')
        full = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else os.path.join(ROOT, page)
        if not os.path.exists(full):
            broken.append(f'{target} (no such file)')
        elif anchor and anchor not in anchors(full):
            broken.append(f'{target} (no such heading)')
    assert not broken, f'{page}: broken links {broken}'


def test_the_slug_follows_github():
    assert slug('Resume, preemption and requeueing') == 'resume-preemption-and-requeueing'
    assert slug('Re-ranking, which vectors') == 're-ranking-which-vectors'
    assert slug('`--select val`: model selection') == '--select-val-model-selection'


def test_nothing_cites_a_document_outside_the_repository():
    """A reader cannot follow "the SPEC" (a document the repository does not hold): the code cites the paper,
    the release's behaviour or a page of docs/."""
    pages = PYTHON_FILES + MARKDOWN + [os.path.join('tests', f) for f in os.listdir(os.path.join(ROOT, 'tests'))
                                       if f.endswith('.py')]
    citing = [p for p in pages if re.search(r'\bSPEC\b', source(p)) and p != os.path.join('tests', 'test_layout.py')]
    assert not citing, f'files citing the SPEC: {citing}'
