"""Release and grading of the course's assignments, wrapped around nbgrader.

``python -m autograder release ASSIGNMENT`` (or ``--all``) generates the student notebooks in
``notebooks/`` from the nbgrader sources in ``solutions/``.
"""
