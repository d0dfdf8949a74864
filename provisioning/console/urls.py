from django.contrib.auth import views as auth
from django.urls import path

from provisioning.console import views
from provisioning.console.forms import ConsoleLoginForm

app_name = "console"

urlpatterns = [
    path(
        "login/",
        auth.LoginView.as_view(
            template_name="console/login.html",
            authentication_form=ConsoleLoginForm,
            next_page="console:fleet",
        ),
        name="login",
    ),
    path("logout/", auth.LogoutView.as_view(next_page="console:login"), name="logout"),
    path("", views.fleet, name="fleet"),
    path("tokens/", views.api_tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.revoke_api_token, name="revoke-token"),
    path("sites/<int:pk>/", views.site, name="site"),
    path("racks/<int:pk>/", views.rack, name="rack"),
    path("ultraservers/<int:pk>/", views.ultraserver, name="ultraserver"),
    path("sites/<int:pk>/topology/", views.site_topology, name="site-topology"),
    path("sites/<int:pk>/reservations/", views.reservations, name="site-reservations"),
    path("reservations/", views.reservations, name="reservations"),
    path("units/", views.units, name="units"),
    path("units/<int:pk>/", views.unit, name="unit"),
    path("workflows/", views.workflows, name="workflows"),
    path("workflows/new-upgrade/", views.start_upgrade, name="start-upgrade"),
    path("workflows/<int:pk>/<str:verb>/", views.workflow_action, name="workflow-action"),
    path("sovereignty/", views.sovereignty_home, name="sovereignty"),
    path("sovereignty/log/", views.access_log, name="access-log"),
    path("sovereignty/rules/<int:pk>/what-if/", views.what_if, name="what-if"),
    path(
        "sovereignty/access-requests/<int:pk>/<str:verb>/",
        views.decide_access,
        name="decide-access",
    ),
    path(
        "sovereignty/maintenance-windows/<int:pk>/<str:verb>/",
        views.decide_window,
        name="decide-window",
    ),
]
