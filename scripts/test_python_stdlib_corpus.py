#!/usr/bin/env python3
"""Checks python-stdlib-corpus.py's --code-only stripping on small programs with known answers.

    python3 scripts/test_python_stdlib_corpus.py      (run by the Swift suite, CodeCorpusScriptTests)
"""
import importlib.util
import os
import unittest

_spec = importlib.util.spec_from_file_location(
    "corpus", os.path.join(os.path.dirname(os.path.abspath(__file__)), "python-stdlib-corpus.py"))
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)
strip = corpus.strip_docstrings_and_comments


class StripDocstringsAndComments(unittest.TestCase):
    def test_docstrings_and_comment_lines_go_and_the_code_stays(self):
        source = '"""Module doc."""\n# a comment\nimport os\n\n\ndef f(x):\n    """Doc\n    on two lines."""\n' \
                 '    # why\n    return x + 1  # trailing\n\n\nclass C:\n    \'single-quoted doc\'\n    y = 2\n'
        self.assertEqual(strip(source), 'import os\n\n\ndef f(x):\n    return x + 1\n\n\nclass C:\n    y = 2\n')

    def test_a_body_that_was_only_a_docstring_gets_pass(self):
        self.assertEqual(strip('def f():\n    """Nothing else."""\n\n\ndef g():\n    return 1\n'),
                         'def f():\n    pass\n\n\ndef g():\n    return 1\n')

    def test_a_hash_inside_a_string_is_not_a_comment(self):
        source = 'x = "a # b"  # c\ny = \'#\'\n'
        self.assertEqual(strip(source), 'x = "a # b"\ny = \'#\'\n')

    def test_a_string_that_is_not_first_in_its_body_is_kept(self):
        source = 'def f():\n    x = 1\n    """not a docstring"""\n    return x\n'
        self.assertEqual(strip(source), source)

    def test_comments_inside_brackets_and_blank_runs_are_capped_at_two(self):
        source = 'x = [\n    1,  # one\n    # between\n    2,\n]\n\n\n# gone\n\n\ny = 3\n'
        self.assertEqual(strip(source), 'x = [\n    1,\n    2,\n]\n\n\ny = 3\n')

    def test_a_docstring_that_shares_its_line_is_refused(self):
        self.assertIsNone(strip('def f(): "doc"; return 1\n'))
        self.assertIsNone(strip('class C: """doc"""\n'))

    def test_the_result_is_checked_to_be_the_same_program(self):
        self.assertEqual(corpus.without_docstrings(corpus.ast.parse('def f():\n    "d"\n')),
                         corpus.without_docstrings(corpus.ast.parse('def f():\n    pass\n')))
        self.assertNotEqual(corpus.without_docstrings(corpus.ast.parse('x = 1\n')),
                            corpus.without_docstrings(corpus.ast.parse('x = 2\n')))


if __name__ == "__main__":
    unittest.main()
