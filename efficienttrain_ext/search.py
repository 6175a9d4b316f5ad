"""Curriculum searches on any ``evaluate(sizes) -> accuracy`` function (the algorithms of
:mod:`efficienttrain_ext.curriculum.search`); ``etrain search`` runs them with real proxy trainings."""

from .curriculum.search import SearchResult, Trial, check_search_args, greedy_search, schedule_spec

__all__ = ["SearchResult", "Trial", "check_search_args", "greedy_search", "schedule_spec"]
