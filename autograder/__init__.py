"""Release and grading of the course's assignments, wrapped around nbgrader.

``python -m autograder release ASSIGNMENT`` (or ``--all``) generates the student notebooks in
``notebooks/`` from the nbgrader sources in ``solutions/``; ``grade`` grades a folder of
submissions in sandboxes; ``check`` runs a student's visible checks. The guide for writing
checks is ``autograder/README.md``.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the course repository
