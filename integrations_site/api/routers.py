from rest_framework.routers import DynamicRoute, SimpleRouter


class ContractRouter(SimpleRouter):
    """Collections and objects end in '/'; actions on one object do not (DESIGN.md).

    Detail actions (``/integrations/{id}/enable``) also answer with a trailing
    slash, without a redirect; the schema shows the contract's form.
    """

    routes = [
        route if not (isinstance(route, DynamicRoute) and route.detail) else DynamicRoute(
            url=r"^{prefix}/{lookup}/{url_path}/?$",
            name=route.name,
            detail=True,
            initkwargs=route.initkwargs,
        )
        for route in SimpleRouter.routes
    ]
