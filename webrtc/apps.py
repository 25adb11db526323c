from django.apps import AppConfig


class WebrtcConfig(AppConfig):
    name = "webrtc"
