"""Curriculum searches on any ``evaluate(sizes) -> accuracy`` function (the algorithms of
:mod:`efficienttrain_ext.curriculum.search`); ``etrain search`` runs them with real proxy trainings.

    from efficienttrain_ext.search import search_et, search_etpp
    res = search_et(evaluate, candidates=[96, 128, 160, 192], stages=5, final_size=224, tolerance=0.2)
    res.sizes, [t.sizes for t in res.trials]          # Algorithm 1's schedule and the size lists it trained
    res = search_etpp(evaluate, [96, 128, 160, 192], stages=10, final_size=224, epochs=300)
    res.sizes, res.epochs                              # the most accurate sizes at 300 final-size epochs
"""

from .curriculum.search import (ALGORITHMS, Measurement, SearchResult, Trial, check_budget, check_search_args,
                                etpp_schedule_spec, etpp_stage_epochs, schedule_spec, search_et, search_etpp,
                                search_forward)

__all__ = ["ALGORITHMS", "Measurement", "SearchResult", "Trial", "check_budget", "check_search_args",
           "etpp_schedule_spec", "etpp_stage_epochs", "schedule_spec", "search_et", "search_etpp", "search_forward"]
