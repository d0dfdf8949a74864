from django.contrib.auth import views as auth
from django.urls import path

from provisioning.console import alerts, operator_actions, transparency, views, workflow_pages
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
    path("alerts/", alerts.alerts, name="alerts"),
    path("alerts/badge/", alerts.badge, name="alerts-badge"),
    path("alerts/<int:pk>/<str:verb>/", alerts.act, name="alert-action"),
    path("workflows/", views.workflows, name="workflows"),
    path("workflows/new-upgrade/", views.start_upgrade, name="start-upgrade"),
    path("workflows/<int:pk>/", workflow_pages.workflow_detail, name="workflow"),
    path(
        "workflows/<int:pk>/steer/<str:verb>/",
        workflow_pages.workflow_steer,
        name="workflow-steer",
    ),
    path(
        "workflows/<int:pk>/dispatch/",
        workflow_pages.workflow_dispatch,
        name="workflow-dispatch",
    ),
    path(
        "workflows/<int:pk>/abort-batch/",
        operator_actions.abort_batch,
        name="workflow-abort-batch",
    ),
    path(
        "workflows/<int:pk>/targets/<int:target_id>/<str:verb>/",
        operator_actions.target_action,
        name="workflow-target-action",
    ),
    path("sovereignty/", views.sovereignty_home, name="sovereignty"),
    path("sovereignty/log/", transparency.access_log, name="access-log"),
    path("sovereignty/log/export/", transparency.access_log_export, name="access-log-export"),
    path("sovereignty/grants/<int:pk>/revoke/", transparency.revoke_grant, name="revoke-grant"),
    path(
        "sovereignty/maintenance-windows/<int:pk>/withdraw/",
        transparency.withdraw_window,
        name="withdraw-window",
    ),
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
