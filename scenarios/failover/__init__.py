"""The failover regression suite on a running HA Kubernetes: a fault catalogue (cases as data, Jepsen-style
target selectors, each with the bound it is held to), clients that record histories (API prober, write
ledger), observers (VIP holders, haproxy backends, etcd leader, lease holders, node readiness), a checker
that decides afterwards, and a timeline picture per case.

Data flows one way: ``catalogue.Case`` → ``run`` on an ``scenarios.installed.Installed`` topology →
``model.CaseHistory`` (what the clients and observers recorded) → ``checker`` → ``model.CaseResult`` →
results JSON and ``timeline`` picture.
"""
