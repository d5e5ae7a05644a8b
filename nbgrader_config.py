# nbgrader's course layout for this repository: sources in solutions/, student notebooks in
# notebooks/. `python -m autograder release` and the `nbgrader` command both read this file.
c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
